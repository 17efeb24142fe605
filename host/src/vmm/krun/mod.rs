//! The libkrun VMM backend (see `docs/vmm-libkrun.md`).
//!
//! - [`VmSpec`] (`vmm/mod.rs`): what to boot, shared with the other backends.
//! - [`plan`] (`plan.rs`): a spec turned into the exact libkrun calls; pure.
//! - [`detect`] (`load.rs`): `dlopen` libkrun at run time and resolve it.
//! - [`execute`] (`exec.rs`): replay a plan through the loaded library.
//! - [`Krun`] (`backend.rs`): the [`crate::vmm::Vmm`] implementation,
//!   which runs it all in a child process ([`child_main`], `child.rs`),
//!   since `krun_start_enter` takes its process over.

mod backend;
mod child;
mod error;
mod exec;
mod load;
mod plan;

#[cfg(test)]
mod tests_ffi;
#[cfg(test)]
mod tests_plan;

pub use super::VmSpec;
pub use backend::Krun;
pub use child::{
    child_command, child_main, child_main_with, read_spec, spec_path, write_spec, CHILD_SUBCOMMAND,
};
pub use error::KrunError;
pub use exec::execute;
pub use load::{detect, detect_from, KrunLib, CANDIDATES, LIBKRUN_ENV};
pub use plan::{
    plan, plan_with, KernelFormat, KernelMode, KrunCall, CMDLINE_BUDGET, LOG_LEVEL_WARN,
    MIN_MEMORY_MIB, SUN_PATH_MAX, TSI_NONE,
};
