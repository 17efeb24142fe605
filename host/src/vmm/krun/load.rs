//! [`detect`]: find libkrun at run time with `dlopen` and resolve the
//! functions the backend calls. Nothing links against libkrun at build
//! time, so `bottle-host` builds and runs (with the QEMU backend) where it
//! is not installed.

use std::ffi::{c_char, OsString};
use std::path::{Path, PathBuf};

use libloading::Library;

use super::KrunError;

/// Environment variable naming the library to load instead of searching.
pub const LIBKRUN_ENV: &str = "BOTTLE_LIBKRUN";

/// Names tried in order, through the dynamic loader's search path.
#[cfg(target_os = "macos")]
pub const CANDIDATES: &[&str] = &["libkrun.1.dylib", "libkrun.dylib"];
/// Names tried in order, through the dynamic loader's search path.
#[cfg(not(target_os = "macos"))]
pub const CANDIDATES: &[&str] = &["libkrun.so.1", "libkrun.so"];

/// `int32_t f(void)`
pub type FnVoid = unsafe extern "C" fn() -> i32;
/// `int32_t f(uint32_t)`
pub type FnU32 = unsafe extern "C" fn(u32) -> i32;
/// `int32_t f(uint32_t ctx, uint32_t)`
pub type FnCtxU32 = unsafe extern "C" fn(u32, u32) -> i32;
/// `krun_set_vm_config`
pub type FnVmConfig = unsafe extern "C" fn(u32, u8, u32) -> i32;
/// `int32_t f(uint32_t ctx, const char *)`
pub type FnCtxStr = unsafe extern "C" fn(u32, *const c_char) -> i32;
/// `krun_add_vsock_port`
pub type FnVsockPort = unsafe extern "C" fn(u32, u32, *const c_char) -> i32;
/// `krun_add_vsock_port2`
pub type FnVsockPort2 = unsafe extern "C" fn(u32, u32, *const c_char, bool) -> i32;
/// `krun_set_exec`
pub type FnSetExec =
    unsafe extern "C" fn(u32, *const c_char, *const *const c_char, *const *const c_char) -> i32;
/// `krun_set_env`
pub type FnSetEnv = unsafe extern "C" fn(u32, *const *const c_char) -> i32;
/// `krun_set_kernel`
pub type FnSetKernel =
    unsafe extern "C" fn(u32, *const c_char, u32, *const c_char, *const c_char) -> i32;

/// The functions of a loaded libkrun. The pointers stay valid while `_lib`
/// is alive, which is as long as this struct.
pub struct KrunLib {
    /// What was loaded (name or path), for messages.
    pub name: String,
    pub(crate) create_ctx: FnVoid,
    pub(crate) free_ctx: FnU32,
    pub(crate) set_log_level: FnU32,
    pub(crate) set_vm_config: FnVmConfig,
    pub(crate) set_root: FnCtxStr,
    pub(crate) add_vsock_port: FnVsockPort,
    pub(crate) set_exec: FnSetExec,
    pub(crate) start_enter: FnU32,
    pub(crate) disable_implicit_vsock: FnU32,
    pub(crate) add_vsock: FnCtxU32,
    pub(crate) add_vsock_port2: Option<FnVsockPort2>,
    pub(crate) set_env: Option<FnSetEnv>,
    pub(crate) set_console_output: Option<FnCtxStr>,
    pub(crate) set_kernel: Option<FnSetKernel>,
    _lib: Library,
}

impl std::fmt::Debug for KrunLib {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KrunLib")
            .field("name", &self.name)
            .field("add_vsock_port2", &self.add_vsock_port2.is_some())
            .field("set_env", &self.set_env.is_some())
            .field("set_console_output", &self.set_console_output.is_some())
            .field("set_kernel", &self.set_kernel.is_some())
            .finish()
    }
}

impl KrunLib {
    /// Whether the optional `krun_set_console_output` is there.
    pub fn has_console_output(&self) -> bool {
        self.set_console_output.is_some()
    }
    /// Whether the optional `krun_set_kernel` is there.
    pub fn has_set_kernel(&self) -> bool {
        self.set_kernel.is_some()
    }
}

/// Load libkrun: `$BOTTLE_LIBKRUN` if set, else [`CANDIDATES`].
pub fn detect() -> Result<KrunLib, KrunError> {
    match std::env::var_os(LIBKRUN_ENV) {
        Some(path) if !path.is_empty() => detect_from(&[PathBuf::from(path)]),
        _ => detect_from(&CANDIDATES.iter().map(PathBuf::from).collect::<Vec<_>>()),
    }
}

/// Load the first of `candidates` that opens (a bare name goes through the
/// loader's search path) and resolve the functions.
pub fn detect_from(candidates: &[PathBuf]) -> Result<KrunLib, KrunError> {
    let mut reason = String::from("no candidates");
    for c in candidates {
        // SAFETY: loading a library runs its initialisers. libkrun's are
        // Rust/C static constructors with no preconditions on the caller;
        // the path is one the user or the packaged name chose.
        match unsafe { Library::new(c.as_os_str()) } {
            Ok(lib) => return resolve(lib, c),
            Err(e) => reason = e.to_string(),
        }
    }
    Err(KrunError::NotFound {
        looked_for: candidates
            .iter()
            .map(|c| c.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        reason,
    })
}

/// Resolve a required symbol into a plain function pointer of type `T`.
///
/// # Safety
/// `T` must be the function's true C signature.
unsafe fn required<T: Copy>(lib: &Library, name: &Path, sym: &'static str) -> Result<T, KrunError> {
    // SAFETY: the caller vouches for `T`, as `optional` requires.
    unsafe { optional::<T>(lib, sym) }.ok_or_else(|| KrunError::MissingSymbol {
        library: name.display().to_string(),
        symbol: sym,
    })
}

/// Resolve an optional symbol.
///
/// # Safety
/// `T` must be the function's true C signature.
unsafe fn optional<T: Copy>(lib: &Library, sym: &'static str) -> Option<T> {
    let mut cname: Vec<u8> = sym.as_bytes().to_vec();
    cname.push(0);
    // SAFETY: the caller vouches for `T`; the pointer is copied out and only
    // used while `lib` lives (both end up in the same `KrunLib`).
    unsafe { lib.get::<T>(&cname).ok().map(|s| *s) }
}

fn resolve(lib: Library, name: &Path) -> Result<KrunLib, KrunError> {
    let l = &lib;
    // SAFETY: each type alias is transcribed from the prototype of the same
    // name in libkrun's include/libkrun.h (`int32_t` → i32, `uint32_t` →
    // u32, `uint8_t` → u8, `bool` → bool, `const char *` → *const c_char,
    // `const char *const[]` → *const *const c_char), and the pointers are
    // stored beside the `Library` that keeps them valid.
    let out = unsafe {
        KrunLib {
            name: OsString::from(name.as_os_str())
                .to_string_lossy()
                .into_owned(),
            create_ctx: required(l, name, "krun_create_ctx")?,
            free_ctx: required(l, name, "krun_free_ctx")?,
            set_log_level: required(l, name, "krun_set_log_level")?,
            set_vm_config: required(l, name, "krun_set_vm_config")?,
            set_root: required(l, name, "krun_set_root")?,
            add_vsock_port: required(l, name, "krun_add_vsock_port")?,
            set_exec: required(l, name, "krun_set_exec")?,
            start_enter: required(l, name, "krun_start_enter")?,
            disable_implicit_vsock: required(l, name, "krun_disable_implicit_vsock")?,
            add_vsock: required(l, name, "krun_add_vsock")?,
            add_vsock_port2: optional(l, "krun_add_vsock_port2"),
            set_env: optional(l, "krun_set_env"),
            set_console_output: optional(l, "krun_set_console_output"),
            set_kernel: optional(l, "krun_set_kernel"),
            _lib: lib,
        }
    };
    Ok(out)
}
