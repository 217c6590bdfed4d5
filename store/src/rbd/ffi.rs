//! Hand-written declarations of the librbd C API (`rbd/librbd.h`, Ceph 16.2 / librbd 1.16) that
//! [`crate::rbd`] uses, plus the three librados calls it needs to name a data pool. Every struct
//! layout was checked against the header with a C program (sizes and field offsets are asserted
//! in the tests at the bottom); only this module and `crate::rados::ffi` declare foreign
//! functions.

#![allow(non_camel_case_types)]

use libc::{c_char, c_int, c_void, size_t, ssize_t};

use crate::rados::{rados_ioctx_t, rados_t};

pub type rbd_image_t = *mut c_void;
pub type rbd_image_options_t = *mut c_void;
pub type rbd_completion_t = *mut c_void;
pub type rbd_callback_t = Option<unsafe extern "C" fn(cb: rbd_completion_t, arg: *mut c_void)>;
/// Progress callback. librbd calls it unconditionally (`CProgressContext` does not check for
/// NULL), so passing `None` crashes: always pass a function.
pub type librbd_progress_fn_t = Option<unsafe extern "C" fn(offset: u64, total: u64, ptr: *mut c_void) -> c_int>;

// Image option ids (the anonymous enum after `rbd_version` in librbd.h).
pub const RBD_IMAGE_OPTION_FEATURES: c_int = 1;
pub const RBD_IMAGE_OPTION_ORDER: c_int = 2;
pub const RBD_IMAGE_OPTION_STRIPE_UNIT: c_int = 3;
pub const RBD_IMAGE_OPTION_STRIPE_COUNT: c_int = 4;
pub const RBD_IMAGE_OPTION_DATA_POOL: c_int = 10;
pub const RBD_IMAGE_OPTION_CLONE_FORMAT: c_int = 12;

pub const RBD_MAX_BLOCK_NAME_SIZE: usize = 24;
pub const RBD_MAX_IMAGE_NAME_SIZE: usize = 96;

/// `rbd_image_spec_t`: one entry of `rbd_list2`.
#[repr(C)]
#[derive(Debug)]
pub struct rbd_image_spec_t {
    pub id: *mut c_char,
    pub name: *mut c_char,
}

/// `rbd_linked_image_spec_t`: the parent of a clone.
#[repr(C)]
#[derive(Debug)]
pub struct rbd_linked_image_spec_t {
    pub pool_id: i64,
    pub pool_name: *mut c_char,
    pub pool_namespace: *mut c_char,
    pub image_id: *mut c_char,
    pub image_name: *mut c_char,
    pub trash: bool,
}

/// `rbd_snap_spec_t`; `namespace_type` is the C enum `rbd_snap_namespace_type_t` (int-sized).
#[repr(C)]
#[derive(Debug)]
pub struct rbd_snap_spec_t {
    pub id: u64,
    pub namespace_type: c_int,
    pub name: *mut c_char,
}

/// `rbd_snap_info_t`: one entry of `rbd_snap_list`.
#[repr(C)]
#[derive(Debug)]
pub struct rbd_snap_info_t {
    pub id: u64,
    pub size: u64,
    pub name: *const c_char,
}

/// `rbd_image_info_t`, filled by `rbd_stat`.
#[repr(C)]
#[derive(Debug)]
pub struct rbd_image_info_t {
    pub size: u64,
    pub obj_size: u64,
    pub num_objs: u64,
    pub order: c_int,
    pub block_name_prefix: [c_char; RBD_MAX_BLOCK_NAME_SIZE],
    pub parent_pool: i64,
    pub parent_name: [c_char; RBD_MAX_IMAGE_NAME_SIZE],
}

/// `rbd_image_watcher_t`: one entry of `rbd_watchers_list`.
#[repr(C)]
#[derive(Debug)]
pub struct rbd_image_watcher_t {
    pub addr: *mut c_char,
    pub id: i64,
    pub cookie: u64,
}

impl rbd_image_spec_t {
    pub const EMPTY: Self = rbd_image_spec_t { id: std::ptr::null_mut(), name: std::ptr::null_mut() };
}

impl rbd_linked_image_spec_t {
    pub const EMPTY: Self = rbd_linked_image_spec_t {
        pool_id: 0,
        pool_name: std::ptr::null_mut(),
        pool_namespace: std::ptr::null_mut(),
        image_id: std::ptr::null_mut(),
        image_name: std::ptr::null_mut(),
        trash: false,
    };
}

impl rbd_snap_spec_t {
    pub const EMPTY: Self = rbd_snap_spec_t { id: 0, namespace_type: 0, name: std::ptr::null_mut() };
}

impl rbd_snap_info_t {
    pub const EMPTY: Self = rbd_snap_info_t { id: 0, size: 0, name: std::ptr::null() };
}

impl rbd_image_info_t {
    pub const EMPTY: Self = rbd_image_info_t {
        size: 0,
        obj_size: 0,
        num_objs: 0,
        order: 0,
        block_name_prefix: [0; RBD_MAX_BLOCK_NAME_SIZE],
        parent_pool: 0,
        parent_name: [0; RBD_MAX_IMAGE_NAME_SIZE],
    };
}

impl rbd_image_watcher_t {
    pub const EMPTY: Self = rbd_image_watcher_t { addr: std::ptr::null_mut(), id: 0, cookie: 0 };
}

crate::dylib::foreign_library! {
    library "librbd.so.1", package "librbd1";

    pub fn rbd_version(major: *mut c_int, minor: *mut c_int, extra: *mut c_int);

    pub fn rbd_image_options_create(opts: *mut rbd_image_options_t);
    pub fn rbd_image_options_destroy(opts: rbd_image_options_t);
    pub fn rbd_image_options_set_string(opts: rbd_image_options_t, optname: c_int, optval: *const c_char) -> c_int;
    pub fn rbd_image_options_set_uint64(opts: rbd_image_options_t, optname: c_int, optval: u64) -> c_int;

    pub fn rbd_image_spec_list_cleanup(images: *mut rbd_image_spec_t, num_images: size_t);
    pub fn rbd_linked_image_spec_cleanup(image: *mut rbd_linked_image_spec_t);
    pub fn rbd_snap_spec_cleanup(snap: *mut rbd_snap_spec_t);

    pub fn rbd_list2(io: rados_ioctx_t, images: *mut rbd_image_spec_t, max_images: *mut size_t) -> c_int;
    pub fn rbd_create4(io: rados_ioctx_t, name: *const c_char, size: u64, opts: rbd_image_options_t) -> c_int;
    pub fn rbd_clone3(
        p_ioctx: rados_ioctx_t,
        p_name: *const c_char,
        p_snapname: *const c_char,
        c_ioctx: rados_ioctx_t,
        c_name: *const c_char,
        c_opts: rbd_image_options_t,
    ) -> c_int;
    pub fn rbd_remove(io: rados_ioctx_t, name: *const c_char) -> c_int;

    pub fn rbd_open(io: rados_ioctx_t, name: *const c_char, image: *mut rbd_image_t, snap_name: *const c_char)
    -> c_int;
    pub fn rbd_open_read_only(
        io: rados_ioctx_t,
        name: *const c_char,
        image: *mut rbd_image_t,
        snap_name: *const c_char,
    ) -> c_int;
    pub fn rbd_close(image: rbd_image_t) -> c_int;

    pub fn rbd_resize2(
        image: rbd_image_t,
        size: u64,
        allow_shrink: bool,
        cb: librbd_progress_fn_t,
        cbdata: *mut c_void,
    ) -> c_int;
    pub fn rbd_stat(image: rbd_image_t, info: *mut rbd_image_info_t, infosize: size_t) -> c_int;
    pub fn rbd_get_size(image: rbd_image_t, size: *mut u64) -> c_int;
    pub fn rbd_get_features(image: rbd_image_t, features: *mut u64) -> c_int;
    pub fn rbd_get_data_pool_id(image: rbd_image_t) -> i64;
    pub fn rbd_get_parent(
        image: rbd_image_t,
        parent_image: *mut rbd_linked_image_spec_t,
        parent_snap: *mut rbd_snap_spec_t,
    ) -> c_int;
    pub fn rbd_flatten(image: rbd_image_t) -> c_int;

    pub fn rbd_snap_list(image: rbd_image_t, snaps: *mut rbd_snap_info_t, max_snaps: *mut c_int) -> c_int;
    pub fn rbd_snap_list_end(snaps: *mut rbd_snap_info_t);
    pub fn rbd_snap_create(image: rbd_image_t, snapname: *const c_char) -> c_int;
    pub fn rbd_snap_remove(image: rbd_image_t, snapname: *const c_char) -> c_int;

    pub fn rbd_watchers_list(
        image: rbd_image_t,
        watchers: *mut rbd_image_watcher_t,
        max_watchers: *mut size_t,
    ) -> c_int;
    pub fn rbd_watchers_list_cleanup(watchers: *mut rbd_image_watcher_t, num_watchers: size_t);

    pub fn rbd_aio_create_completion(
        cb_arg: *mut c_void,
        complete_cb: rbd_callback_t,
        c: *mut rbd_completion_t,
    ) -> c_int;
    pub fn rbd_aio_get_return_value(c: rbd_completion_t) -> ssize_t;
    pub fn rbd_aio_release(c: rbd_completion_t);
    pub fn rbd_aio_write(image: rbd_image_t, off: u64, len: size_t, buf: *const c_char, c: rbd_completion_t) -> c_int;
    pub fn rbd_aio_read(image: rbd_image_t, off: u64, len: size_t, buf: *mut c_char, c: rbd_completion_t) -> c_int;
    pub fn rbd_aio_discard(image: rbd_image_t, off: u64, len: u64, c: rbd_completion_t) -> c_int;
    pub fn rbd_aio_flush(image: rbd_image_t, c: rbd_completion_t) -> c_int;

    // librados calls used only to name an image's data pool (librados.h); librbd.so.1 links
    // librados.so.2, so they resolve through it.
    pub fn rados_ioctx_get_cluster(io: rados_ioctx_t) -> rados_t;
    pub fn rados_ioctx_get_id(io: rados_ioctx_t) -> i64;
    pub fn rados_pool_reverse_lookup(cluster: rados_t, id: i64, buf: *mut c_char, maxlen: size_t) -> c_int;
}

#[cfg(test)]
mod tests {
    use std::mem::{align_of, offset_of, size_of};

    use super::*;

    /// Sizes and offsets printed by a C program compiled against /usr/include/rbd/librbd.h
    /// (Ceph 16.2.15, x86_64).
    #[test]
    fn struct_layouts_match_librbd_h() {
        assert_eq!((size_of::<rbd_image_info_t>(), align_of::<rbd_image_info_t>()), (160, 8));
        assert_eq!(offset_of!(rbd_image_info_t, order), 24);
        assert_eq!(offset_of!(rbd_image_info_t, block_name_prefix), 28);
        assert_eq!(offset_of!(rbd_image_info_t, parent_pool), 56);
        assert_eq!(offset_of!(rbd_image_info_t, parent_name), 64);
        assert_eq!(size_of::<rbd_image_spec_t>(), 16);
        assert_eq!(size_of::<rbd_linked_image_spec_t>(), 48);
        assert_eq!(offset_of!(rbd_linked_image_spec_t, image_name), 32);
        assert_eq!(offset_of!(rbd_linked_image_spec_t, trash), 40);
        assert_eq!(size_of::<rbd_snap_spec_t>(), 24);
        assert_eq!(offset_of!(rbd_snap_spec_t, namespace_type), 8);
        assert_eq!(offset_of!(rbd_snap_spec_t, name), 16);
        assert_eq!(size_of::<rbd_snap_info_t>(), 24);
        assert_eq!(offset_of!(rbd_snap_info_t, size), 8);
        assert_eq!(offset_of!(rbd_snap_info_t, name), 16);
        assert_eq!(size_of::<rbd_image_watcher_t>(), 24);
        assert_eq!(offset_of!(rbd_image_watcher_t, id), 8);
        assert_eq!(offset_of!(rbd_image_watcher_t, cookie), 16);
    }
}
