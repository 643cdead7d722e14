//! The guest's few raw kernel calls: `mount(2)`, `finit_module(2)`,
//! `reboot(2)`, `prctl(PR_SET_DUMPABLE, 0)` and three device-mapper ioctls
//! (`DM_DEV_CREATE`, `DM_TABLE_LOAD`, `DM_DEV_SUSPEND` to resume).
//!
//! Why `unsafe` is allowed here and nowhere else: std has no wrapper for
//! these calls, and the `devicemapper` crate links libdevmapper, which
//! cannot be linked into a static init. Each call passes only buffers this
//! module owns (C strings or `#[repr(C)]` structs whose sizes are checked
//! at compile time against `<linux/dm-ioctl.h>`), so the unsafety is
//! confined to the FFI boundary itself.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use zeroize::Zeroize;

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in string"))
}

fn check(rc: libc::c_long) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `mount(2)` with no data string.
pub fn mount(source: &str, target: &str, fstype: &str, flags: libc::c_ulong) -> io::Result<()> {
    let (s, t, f) = (cstr(source)?, cstr(target)?, cstr(fstype)?);
    // SAFETY: three valid NUL-terminated strings and a null data pointer.
    let rc = unsafe { libc::mount(s.as_ptr(), t.as_ptr(), f.as_ptr(), flags, std::ptr::null()) };
    check(rc.into())
}

/// Loads the kernel module in `file` (no parameters).
pub fn finit_module(file: &File) -> io::Result<()> {
    // SAFETY: a valid fd, an empty NUL-terminated parameter string, flags 0.
    let rc = unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), c"".as_ptr(), 0) };
    check(rc)
}

/// Makes this process non-dumpable (`prctl(PR_SET_DUMPABLE, 0)`): no core
/// dump, and no `ptrace` attach or `/proc/<pid>/mem` read by anyone but
/// root with `CAP_SYS_PTRACE`, while it holds key material. `execve` resets
/// it for the next program.
pub fn set_undumpable() -> io::Result<()> {
    // SAFETY: PR_SET_DUMPABLE takes one integer argument, no pointers.
    let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0 as libc::c_ulong, 0, 0, 0) };
    check(rc.into())
}

/// Syncs, then powers the machine off. Returns only if the kernel refused.
pub fn power_off() -> io::Error {
    // SAFETY: sync and reboot take no pointers.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_POWER_OFF);
    }
    io::Error::last_os_error()
}

const DM_NAME_LEN: usize = 128;
const DM_UUID_LEN: usize = 129;
const DM_READONLY_FLAG: u32 = 1 << 0;
/// Asks the kernel to wipe its copy of the ioctl buffer (the table, which
/// may hold a key) once done, as cryptsetup does.
const DM_SECURE_DATA_FLAG: u32 = 1 << 15;

/// `struct dm_ioctl` from `<linux/dm-ioctl.h>`.
#[repr(C)]
#[derive(Clone, Copy)]
struct DmIoctl {
    version: [u32; 3],
    data_size: u32,
    data_start: u32,
    target_count: u32,
    open_count: i32,
    flags: u32,
    event_nr: u32,
    padding: u32,
    dev: u64,
    name: [u8; DM_NAME_LEN],
    uuid: [u8; DM_UUID_LEN],
    data: [u8; 7],
}

/// `struct dm_target_spec`.
#[repr(C)]
#[derive(Clone, Copy)]
struct DmTargetSpec {
    sector_start: u64,
    length: u64,
    status: i32,
    next: u32,
    target_type: [u8; 16],
}

const PARAMS_LEN: usize = 1024;

/// A `DM_TABLE_LOAD` request with one target.
#[repr(C)]
struct TableLoad {
    io: DmIoctl,
    spec: DmTargetSpec,
    params: [u8; PARAMS_LEN],
}

const _: () = assert!(size_of::<DmIoctl>() == 312);
const _: () = assert!(size_of::<DmTargetSpec>() == 40);
const _: () = assert!(size_of::<TableLoad>() == 312 + 40 + PARAMS_LEN);

/// `_IOWR(DM_IOCTL, nr, struct dm_ioctl)`.
const fn dm_req(nr: u32) -> u32 {
    (3 << 30) | ((size_of::<DmIoctl>() as u32) << 16) | (0xfd << 8) | nr
}
const DM_DEV_CREATE: u32 = dm_req(3);
const DM_DEV_SUSPEND: u32 = dm_req(6);
const DM_TABLE_LOAD: u32 = dm_req(9);

impl DmIoctl {
    fn new(name: &str, data_size: usize) -> io::Result<Self> {
        if name.is_empty() || name.len() >= DM_NAME_LEN || name.contains('\0') {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad dm name"));
        }
        let mut io = DmIoctl {
            version: [4, 0, 0],
            data_size: data_size as u32,
            data_start: size_of::<DmIoctl>() as u32,
            target_count: 0,
            open_count: 0,
            flags: 0,
            event_nr: 0,
            padding: 0,
            dev: 0,
            name: [0; DM_NAME_LEN],
            uuid: [0; DM_UUID_LEN],
            data: [0; 7],
        };
        io.name[..name.len()].copy_from_slice(name.as_bytes());
        Ok(io)
    }
}

/// An open `/dev/mapper/control`.
#[derive(Debug)]
pub struct DmControl(File);

impl DmControl {
    /// Opens the control node.
    pub fn open(path: &str) -> io::Result<Self> {
        File::options().read(true).write(true).open(path).map(Self)
    }

    fn ioctl<T>(&self, req: u32, buf: &mut T) -> io::Result<()> {
        // SAFETY: `buf` is a live, exclusively borrowed #[repr(C)] buffer
        // starting with a `dm_ioctl` whose data_size is at most its size.
        let rc = unsafe { libc::ioctl(self.0.as_raw_fd(), req as _, buf as *mut T) };
        check(rc.into())
    }

    /// Creates an empty device `name`; returns its (huge-encoded) device
    /// number.
    pub fn create(&self, name: &str) -> io::Result<u64> {
        let mut io = DmIoctl::new(name, size_of::<DmIoctl>())?;
        self.ioctl(DM_DEV_CREATE, &mut io)?;
        Ok(io.dev)
    }

    /// Loads a read-only table of one target into `name`'s inactive slot.
    /// The request carries `DM_SECURE_DATA_FLAG` (the kernel wipes its
    /// copy), and this module's copy of `params` is zeroized before
    /// returning, so a `crypt` key is not left behind by this call.
    pub fn load_readonly(
        &self,
        name: &str,
        target: &str,
        sectors: u64,
        params: &str,
    ) -> io::Result<()> {
        if target.len() >= 16 || params.len() >= PARAMS_LEN || params.contains('\0') {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad dm table"));
        }
        let mut t = TableLoad {
            io: DmIoctl::new(name, size_of::<TableLoad>())?,
            spec: DmTargetSpec {
                sector_start: 0,
                length: sectors,
                status: 0,
                next: 0,
                target_type: [0; 16],
            },
            params: [0; PARAMS_LEN],
        };
        t.io.target_count = 1;
        t.io.flags = DM_READONLY_FLAG | DM_SECURE_DATA_FLAG;
        t.spec.target_type[..target.len()].copy_from_slice(target.as_bytes());
        t.params[..params.len()].copy_from_slice(params.as_bytes());
        let r = self.ioctl(DM_TABLE_LOAD, &mut t);
        t.params.zeroize();
        r
    }

    /// Makes the loaded table live (`DM_DEV_SUSPEND` without the suspend
    /// flag).
    pub fn resume(&self, name: &str) -> io::Result<()> {
        let mut io = DmIoctl::new(name, size_of::<DmIoctl>())?;
        self.ioctl(DM_DEV_SUSPEND, &mut io)
    }
}

/// Major number of a huge-encoded device number (`huge_encode_dev`).
pub fn dev_major(dev: u64) -> u64 {
    (dev >> 8) & 0xfff
}

/// Minor number of a huge-encoded device number (`huge_encode_dev`).
pub fn dev_minor(dev: u64) -> u64 {
    (dev & 0xff) | ((dev >> 12) & 0xfff00)
}
