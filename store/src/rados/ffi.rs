//! Hand-written declarations of the librados C API (librados.h, Ceph 16.2) that the store uses.
//! Only this module and `crate::rbd::ffi` declare foreign functions.

#![allow(non_camel_case_types)]

use libc::{c_char, c_int, c_uchar, c_void, size_t, time_t};

pub type rados_t = *mut c_void;
pub type rados_ioctx_t = *mut c_void;
pub type rados_completion_t = *mut c_void;
pub type rados_write_op_t = *mut c_void;
pub type rados_read_op_t = *mut c_void;
pub type rados_omap_iter_t = *mut c_void;
pub type rados_xattrs_iter_t = *mut c_void;
pub type rados_list_ctx_t = *mut c_void;
pub type rados_callback_t = Option<unsafe extern "C" fn(cb: rados_completion_t, arg: *mut c_void)>;

pub const LIBRADOS_CREATE_EXCLUSIVE: c_int = 1;
pub const LIBRADOS_CMPXATTR_OP_EQ: u8 = 1;

#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct rados_pool_stat_t {
    pub num_bytes: u64,
    pub num_kb: u64,
    pub num_objects: u64,
    pub num_object_clones: u64,
    pub num_object_copies: u64,
    pub num_objects_missing_on_primary: u64,
    pub num_objects_unfound: u64,
    pub num_objects_degraded: u64,
    pub num_rd: u64,
    pub num_rd_kb: u64,
    pub num_wr: u64,
    pub num_wr_kb: u64,
    pub num_user_bytes: u64,
    pub compressed_bytes_orig: u64,
    pub compressed_bytes: u64,
    pub compressed_bytes_alloc: u64,
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct rados_cluster_stat_t {
    pub kb: u64,
    pub kb_used: u64,
    pub kb_avail: u64,
    pub num_objects: u64,
}

crate::dylib::foreign_library! {
    library "librados.so.2", package "librados2";

    pub fn rados_version(major: *mut c_int, minor: *mut c_int, extra: *mut c_int);
    pub fn rados_create2(cluster: *mut rados_t, cluster_name: *const c_char, name: *const c_char, flags: u64) -> c_int;
    pub fn rados_conf_read_file(cluster: rados_t, path: *const c_char) -> c_int;
    pub fn rados_conf_set(cluster: rados_t, option: *const c_char, value: *const c_char) -> c_int;
    pub fn rados_connect(cluster: rados_t) -> c_int;
    pub fn rados_shutdown(cluster: rados_t);
    pub fn rados_cluster_stat(cluster: rados_t, result: *mut rados_cluster_stat_t) -> c_int;
    pub fn rados_mon_command(
        cluster: rados_t,
        cmd: *mut *const c_char,
        cmdlen: size_t,
        inbuf: *const c_char,
        inbuflen: size_t,
        outbuf: *mut *mut c_char,
        outbuflen: *mut size_t,
        outs: *mut *mut c_char,
        outslen: *mut size_t,
    ) -> c_int;
    pub fn rados_buffer_free(buf: *mut c_char);

    pub fn rados_ioctx_create(cluster: rados_t, pool_name: *const c_char, ioctx: *mut rados_ioctx_t) -> c_int;
    pub fn rados_ioctx_destroy(io: rados_ioctx_t);
    pub fn rados_ioctx_set_namespace(io: rados_ioctx_t, nspace: *const c_char);
    pub fn rados_ioctx_pool_stat(io: rados_ioctx_t, stats: *mut rados_pool_stat_t) -> c_int;

    pub fn rados_nobjects_list_open(io: rados_ioctx_t, ctx: *mut rados_list_ctx_t) -> c_int;
    pub fn rados_nobjects_list_seek(ctx: rados_list_ctx_t, pos: u32) -> u32;
    pub fn rados_nobjects_list_get_pg_hash_position(ctx: rados_list_ctx_t) -> u32;
    pub fn rados_nobjects_list_next2(
        ctx: rados_list_ctx_t,
        entry: *mut *const c_char,
        key: *mut *const c_char,
        nspace: *mut *const c_char,
        entry_size: *mut size_t,
        key_size: *mut size_t,
        nspace_size: *mut size_t,
    ) -> c_int;
    pub fn rados_nobjects_list_close(ctx: rados_list_ctx_t);

    pub fn rados_aio_create_completion2(
        cb_arg: *mut c_void,
        cb_complete: rados_callback_t,
        pc: *mut rados_completion_t,
    ) -> c_int;
    pub fn rados_aio_get_return_value(c: rados_completion_t) -> c_int;
    pub fn rados_aio_get_version(c: rados_completion_t) -> u64;
    pub fn rados_aio_release(c: rados_completion_t);

    pub fn rados_create_write_op() -> rados_write_op_t;
    pub fn rados_release_write_op(op: rados_write_op_t);
    pub fn rados_write_op_assert_exists(op: rados_write_op_t);
    pub fn rados_write_op_assert_version(op: rados_write_op_t, ver: u64);
    pub fn rados_write_op_create(op: rados_write_op_t, exclusive: c_int, category: *const c_char);
    pub fn rados_write_op_write(op: rados_write_op_t, buffer: *const c_char, len: size_t, offset: u64);
    pub fn rados_write_op_write_full(op: rados_write_op_t, buffer: *const c_char, len: size_t);
    pub fn rados_write_op_truncate(op: rados_write_op_t, offset: u64);
    pub fn rados_write_op_remove(op: rados_write_op_t);
    pub fn rados_write_op_setxattr(op: rados_write_op_t, name: *const c_char, value: *const c_char, value_len: size_t);
    pub fn rados_write_op_rmxattr(op: rados_write_op_t, name: *const c_char);
    pub fn rados_write_op_omap_set2(
        op: rados_write_op_t,
        keys: *const *const c_char,
        vals: *const *const c_char,
        key_lens: *const size_t,
        val_lens: *const size_t,
        num: size_t,
    );
    pub fn rados_write_op_omap_cmp2(
        op: rados_write_op_t,
        key: *const c_char,
        comparison_operator: u8,
        val: *const c_char,
        key_len: size_t,
        val_len: size_t,
        prval: *mut c_int,
    );
    pub fn rados_write_op_omap_rm_keys2(
        op: rados_write_op_t,
        keys: *const *const c_char,
        key_lens: *const size_t,
        keys_len: size_t,
    );
    pub fn rados_write_op_omap_clear(op: rados_write_op_t);
    pub fn rados_aio_write_op_operate(
        op: rados_write_op_t,
        io: rados_ioctx_t,
        completion: rados_completion_t,
        oid: *const c_char,
        mtime: *mut time_t,
        flags: c_int,
    ) -> c_int;

    pub fn rados_aio_read(
        io: rados_ioctx_t,
        oid: *const c_char,
        completion: rados_completion_t,
        buf: *mut c_char,
        len: size_t,
        off: u64,
    ) -> c_int;

    pub fn rados_create_read_op() -> rados_read_op_t;
    pub fn rados_release_read_op(op: rados_read_op_t);
    pub fn rados_read_op_assert_version(op: rados_read_op_t, ver: u64);
    pub fn rados_read_op_stat(op: rados_read_op_t, psize: *mut u64, pmtime: *mut time_t, prval: *mut c_int);
    pub fn rados_read_op_read(
        op: rados_read_op_t,
        offset: u64,
        len: size_t,
        buffer: *mut c_char,
        bytes_read: *mut size_t,
        prval: *mut c_int,
    );
    pub fn rados_read_op_getxattrs(op: rados_read_op_t, iter: *mut rados_xattrs_iter_t, prval: *mut c_int);
    pub fn rados_read_op_omap_get_vals2(
        op: rados_read_op_t,
        start_after: *const c_char,
        filter_prefix: *const c_char,
        max_return: u64,
        iter: *mut rados_omap_iter_t,
        pmore: *mut c_uchar,
        prval: *mut c_int,
    );
    pub fn rados_read_op_omap_get_vals_by_keys2(
        op: rados_read_op_t,
        keys: *const *const c_char,
        num_keys: size_t,
        key_lens: *const size_t,
        iter: *mut rados_omap_iter_t,
        prval: *mut c_int,
    );
    pub fn rados_aio_read_op_operate(
        op: rados_read_op_t,
        io: rados_ioctx_t,
        completion: rados_completion_t,
        oid: *const c_char,
        flags: c_int,
    ) -> c_int;

    pub fn rados_getxattrs_next(
        iter: rados_xattrs_iter_t,
        name: *mut *const c_char,
        val: *mut *const c_char,
        len: *mut size_t,
    ) -> c_int;
    pub fn rados_getxattrs_end(iter: rados_xattrs_iter_t);
    pub fn rados_omap_get_next2(
        iter: rados_omap_iter_t,
        key: *mut *mut c_char,
        val: *mut *mut c_char,
        key_len: *mut size_t,
        val_len: *mut size_t,
    ) -> c_int;
    pub fn rados_omap_get_end(iter: rados_omap_iter_t);
}
