//! librados and librbd are loaded when first needed (`dlopen`), not linked.
//!
//! The gateway on the embedded backend, the placement engine, the deploy tools and the io_uring
//! benchmarks need no Ceph at all, so `cargo build` needs no Ceph headers or libraries and the
//! binary starts on a machine without them. The first Ceph connection (or RBD handle) opens the
//! shared library by its soname; when it is not installed the caller gets
//! [`StoreError::LibraryMissing`] naming the Debian package, not a loader error at exec time.
//!
//! [`foreign_library!`] turns a list of C declarations into a table of function pointers
//! resolved once, a `load()` that fills it, and one `unsafe fn` per declaration with the same
//! name and signature, so call sites read exactly like calls into an `extern` block.
//!
//! Architecture Invariant: every function of a table is called only after that table's `load()`
//! succeeded. For librados, `Cluster::connect_blocking` loads it, and every other call needs a
//! handle that only a connected cluster gives out; for librbd, `Rbd::new` loads it, and every
//! image handle comes from an `Rbd`.

use std::ffi::{CStr, c_void};

use crate::error::StoreError;

/// An opened shared library; never closed (its functions stay callable for the process's life).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Library(*mut c_void);

/// Why a library could not be loaded, with the dynamic loader's own words (kept, so that every
/// later attempt answers the same).
#[derive(Debug, Clone)]
pub(crate) struct Missing {
    library: String,
    package: String,
    reason: String,
}

impl From<&Missing> for StoreError {
    fn from(m: &Missing) -> StoreError {
        StoreError::LibraryMissing { library: m.library.clone(), package: m.package.clone(), reason: m.reason.clone() }
    }
}

fn missing(soname: &str, package: &str, reason: String) -> Missing {
    Missing { library: soname.to_owned(), package: package.to_owned(), reason }
}

/// The loader's last error message, or `fallback`.
fn dlerror_text(fallback: &str) -> String {
    // SAFETY: dlerror returns NULL or a NUL-terminated string owned by the loader, valid until
    // the next dl* call on this thread; it is copied at once.
    let text = unsafe { libc::dlerror() };
    if text.is_null() {
        fallback.to_owned()
    } else {
        // SAFETY: non-NULL, NUL-terminated (see above).
        unsafe { CStr::from_ptr(text) }.to_string_lossy().into_owned()
    }
}

impl Library {
    /// Opens `soname` (e.g. `librados.so.2`) with every symbol resolved now.
    pub(crate) fn open(soname: &CStr, package: &str) -> Result<Library, Missing> {
        // SAFETY: soname is a valid C string; dlopen runs the library's initialisers, which for
        // librados and librbd only set up static state.
        let handle = unsafe { libc::dlopen(soname.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if handle.is_null() {
            let name = soname.to_string_lossy();
            return Err(missing(&name, package, dlerror_text("dlopen failed")));
        }
        Ok(Library(handle))
    }

    /// The address of `symbol` in this library or the libraries it depends on.
    pub(crate) fn symbol(self, symbol: &CStr, soname: &CStr, package: &str) -> Result<*mut c_void, Missing> {
        // SAFETY: clears any earlier error so that the one read below is dlsym's.
        unsafe { libc::dlerror() };
        // SAFETY: self.0 is a live handle from dlopen (never closed); symbol is a C string.
        let addr = unsafe { libc::dlsym(self.0, symbol.as_ptr()) };
        if addr.is_null() {
            let reason = format!(
                "{} (the installed library lacks {}: it is older than Ceph 16.2 Pacific)",
                dlerror_text("symbol not found"),
                symbol.to_string_lossy()
            );
            return Err(missing(&soname.to_string_lossy(), package, reason));
        }
        Ok(addr)
    }
}

// SAFETY: a dlopen handle is a process-wide token; dlsym on it is thread-safe.
unsafe impl Send for Library {}
// SAFETY: as for Send.
unsafe impl Sync for Library {}

/// Declares the C functions of one shared library, loaded at run time:
///
/// ```ignore
/// foreign_library! {
///     library "librados.so.2", package "librados2";
///     pub fn rados_connect(cluster: rados_t) -> c_int;
/// }
/// ```
///
/// expands to `pub fn load() -> Result<(), StoreError>` and `pub unsafe fn rados_connect(…)`.
macro_rules! foreign_library {
    (
        library $soname:literal, package $package:literal;
        $( pub fn $name:ident ( $( $arg:ident : $ty:ty ),* $(,)? ) $( -> $ret:ty )? ; )*
    ) => {
        /// The resolved functions.
        #[allow(non_snake_case)]
        struct Api {
            $( $name: unsafe extern "C" fn( $( $ty ),* ) $( -> $ret )?, )*
        }

        static API: std::sync::OnceLock<Result<Api, crate::dylib::Missing>> = std::sync::OnceLock::new();

        fn resolve() -> Result<Api, crate::dylib::Missing> {
            let soname: &std::ffi::CStr = match std::ffi::CStr::from_bytes_with_nul(concat!($soname, "\0").as_bytes()) {
                Ok(s) => s,
                Err(_) => unreachable!("a string literal has no interior NUL"),
            };
            let lib = crate::dylib::Library::open(soname, $package)?;
            Ok(Api {
                $( $name: {
                    let name = concat!(stringify!($name), "\0").as_bytes();
                    let name = std::ffi::CStr::from_bytes_with_nul(name)
                        .unwrap_or_else(|_| unreachable!("an identifier has no NUL"));
                    let addr = lib.symbol(name, soname, $package)?;
                    // SAFETY: addr is the C function of this name, declared here with the
                    // signature of its header; on this platform a data and a function pointer
                    // have the same size and representation.
                    unsafe {
                        std::mem::transmute::<*mut std::ffi::c_void, unsafe extern "C" fn( $( $ty ),* ) $( -> $ret )?>(addr)
                    }
                }, )*
            })
        }

        /// Opens the library and resolves every function declared here (once per process;
        /// later calls return the first answer).
        pub fn load() -> Result<(), crate::error::StoreError> {
            match API.get_or_init(resolve) {
                Ok(_) => Ok(()),
                Err(e) => Err(e.into()),
            }
        }

        fn api() -> &'static Api {
            match API.get() {
                Some(Ok(api)) => api,
                // The module's invariant: a handle these functions take exists only after
                // load() succeeded, so this is a bug in this crate, not a missing library.
                _ => panic!(concat!("internal: ", $soname, " called before it was loaded")),
            }
        }

        $(
            /// The C function of the same name (see the library's header).
            ///
            /// # Safety
            /// The C function's own contract; and [`load`] must have succeeded.
            #[allow(clippy::too_many_arguments)]
            pub unsafe fn $name( $( $arg : $ty ),* ) $( -> $ret )? {
                // SAFETY: the caller upholds the C function's contract.
                unsafe { (api().$name)( $( $arg ),* ) }
            }
        )*
    };
}

pub(crate) use foreign_library;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_library_that_is_not_installed_names_its_package() {
        let err =
            Library::open(c"libcyvault-absent.so.7", "cyvault-absent7").map(|_| ()).map_err(|m| StoreError::from(&m));
        let Err(err) = err else { panic!("opened a library that does not exist") };
        assert_eq!(err.code(), "VAULT-ST-016");
        assert!(err.is_permanent());
        let text = err.to_string();
        assert!(text.starts_with("libcyvault-absent.so.7 could not be loaded ("), "{text}");
        assert!(text.contains("cannot open shared object file"), "the loader's reason is kept: {text}");
        assert!(text.ends_with("install it: apt-get install cyvault-absent7"), "{text}");
    }

    #[test]
    fn a_missing_function_is_named() {
        let lib = match Library::open(c"libc.so.6", "libc6") {
            Ok(l) => l,
            Err(m) => panic!("libc: {m:?}"),
        };
        assert!(lib.symbol(c"strlen", c"libc.so.6", "libc6").is_ok());
        let Err(m) = lib.symbol(c"rados_from_the_future", c"libc.so.6", "libc6") else {
            panic!("found a symbol libc does not have")
        };
        let text = StoreError::from(&m).to_string();
        assert!(text.contains("lacks rados_from_the_future"), "{text}");
    }

    mod table {
        use libc::{c_char, size_t};

        crate::dylib::foreign_library! {
            library "libc.so.6", package "libc6";
            pub fn strlen(s: *const c_char) -> size_t;
        }

        #[test]
        fn a_declared_function_is_callable_after_load() {
            assert!(load().is_ok());
            assert!(load().is_ok(), "a second load answers the same");
            // SAFETY: loaded; a NUL-terminated string.
            let n = unsafe { strlen(c"vault".as_ptr()) };
            assert_eq!(n, 5);
        }
    }
}
