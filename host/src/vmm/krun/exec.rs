//! [`execute`]: replay a [`KrunCall`] plan through a loaded [`KrunLib`].
//! Meant for a child process: `krun_start_enter` takes the process over and
//! calls `exit()` when the guest stops.

use std::convert::Infallible;
use std::ffi::{c_char, CString};
use std::ptr;

use super::{KrunCall, KrunError, KrunLib};

/// A NULL-terminated `const char *const[]` borrowing `strings`.
fn c_array(strings: &[CString]) -> Vec<*const c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(ptr::null()))
        .collect()
}

/// Map a libkrun return value (negative errno on failure) to a result.
fn check(call: &'static str, rc: i32) -> Result<i32, KrunError> {
    if rc < 0 {
        Err(KrunError::Call {
            call,
            errno: rc.checked_neg().unwrap_or(libc::EINVAL),
        })
    } else {
        Ok(rc)
    }
}

/// Make the calls of `plan` in order. The plan must start with
/// [`KrunCall::CreateCtx`]; on any failure the context is freed and the
/// error returned. Returns only on failure: when `krun_start_enter`
/// succeeds the process ends with the guest's exit code.
pub fn execute(lib: &KrunLib, plan: &[KrunCall]) -> Result<Infallible, KrunError> {
    let Some((KrunCall::CreateCtx, rest)) = plan.split_first() else {
        return Err(KrunError::Plan("the first call must be krun_create_ctx"));
    };
    if !matches!(rest.last(), Some(KrunCall::StartEnter)) {
        return Err(KrunError::Plan("the last call must be krun_start_enter"));
    }
    // SAFETY: krun_create_ctx takes no arguments.
    let ctx = check("krun_create_ctx", unsafe { (lib.create_ctx)() })? as u32;
    for call in rest {
        if let Err(e) = one(lib, ctx, call) {
            if !matches!(call, KrunCall::StartEnter) {
                // SAFETY: `ctx` came from krun_create_ctx and was not yet
                // consumed (krun_start_enter consumes it, and is last).
                let _ = unsafe { (lib.free_ctx)(ctx) };
            }
            return Err(e);
        }
    }
    Err(KrunError::Plan("krun_start_enter returned success"))
}

/// Make one call. Every FFI call below relies on the same contract: the
/// function pointer was resolved against its libkrun.h prototype (load.rs);
/// `ctx` is a live context id from krun_create_ctx; every `*const c_char`
/// points into a `CString` that outlives the call; every array is
/// NULL-terminated by [`c_array`] and outlives the call; libkrun copies what
/// it keeps.
fn one(lib: &KrunLib, ctx: u32, call: &KrunCall) -> Result<(), KrunError> {
    let name = call.name();
    let unsupported = |symbol, why| KrunError::Unsupported {
        library: lib.name.clone(),
        symbol,
        why,
    };
    let rc = match call {
        KrunCall::CreateCtx => return Err(KrunError::Plan("krun_create_ctx called twice")),
        // SAFETY: the contract above; plain integer argument.
        KrunCall::SetLogLevel { level } => unsafe { (lib.set_log_level)(*level) },
        // SAFETY: the contract above; integer arguments only.
        KrunCall::SetVmConfig { vcpus, ram_mib } => unsafe {
            (lib.set_vm_config)(ctx, *vcpus, *ram_mib)
        },
        KrunCall::SetKernel {
            path,
            format,
            initramfs,
            cmdline,
        } => {
            let f = lib.set_kernel.ok_or_else(|| {
                unsupported("krun_set_kernel", "an external kernel was asked for")
            })?;
            let initrd = initramfs.as_ref().map_or(ptr::null(), |c| c.as_ptr());
            // SAFETY: the contract above; `initrd` is NULL or a live CString,
            // and the header allows NULL for "no initramfs".
            unsafe { f(ctx, path.as_ptr(), *format, initrd, cmdline.as_ptr()) }
        }
        // SAFETY: the contract above.
        KrunCall::SetRoot { path } => unsafe { (lib.set_root)(ctx, path.as_ptr()) },
        // SAFETY: the contract above; context id only.
        KrunCall::DisableImplicitVsock => unsafe { (lib.disable_implicit_vsock)(ctx) },
        // SAFETY: the contract above; integer arguments only.
        KrunCall::AddVsock { tsi_features } => unsafe { (lib.add_vsock)(ctx, *tsi_features) },
        // SAFETY: the contract above.
        KrunCall::AddVsockPort { port, path } => unsafe {
            (lib.add_vsock_port)(ctx, *port, path.as_ptr())
        },
        KrunCall::SetConsoleOutput { path } => {
            let f = lib.set_console_output.ok_or_else(|| {
                unsupported(
                    "krun_set_console_output",
                    "a console log file was asked for",
                )
            })?;
            // SAFETY: the contract above.
            unsafe { f(ctx, path.as_ptr()) }
        }
        KrunCall::SetExec { exec, argv, envp } => {
            let argv = c_array(argv);
            let envp = c_array(envp);
            // SAFETY: the contract above; `argv` and `envp` are non-NULL,
            // NULL-terminated, and borrow CStrings of the plan.
            unsafe { (lib.set_exec)(ctx, exec.as_ptr(), argv.as_ptr(), envp.as_ptr()) }
        }
        // SAFETY: the contract above; on success this never returns.
        KrunCall::StartEnter => unsafe { (lib.start_enter)(ctx) },
    };
    check(name, rc)?;
    if matches!(call, KrunCall::StartEnter) {
        // Returning at all means the VM did not start; a non-negative value
        // here is outside the documented contract.
        return Err(KrunError::Call {
            call: name,
            errno: libc::EINVAL,
        });
    }
    Ok(())
}
