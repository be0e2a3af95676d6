//! Running a script whose result may be longer than RunCommand returns: RunCommand keeps only
//! the last 4096 bytes of output, so such a result comes back in pages read from a snapshot on
//! the guest (`windows::keys_paging`), one read-only RunCommand a page after the first.

use super::error::WorkflowError;
use super::keys::run_script;
use crate::azure::client::ArmClient;
use crate::azure::vm::Vm;
use crate::windows::keys_paging::{self, Pages};

/// The script's result line and stderr: as written when it fit, else put together from its
/// pages. The script must end with `keys_paging::paged_epilogue`.
pub(crate) async fn run_paged(
    arm: &ArmClient,
    vm: &Vm,
    script: &str,
) -> Result<(String, String), WorkflowError> {
    let out = run_script(arm, vm, script).await?;
    let Some(first) = keys_paging::find_page(&out.stdout)? else {
        return Ok((out.stdout, out.stderr));
    };
    // The script (and any edit in it) ran once, in the first call; the rest only read.
    let mut pages = Pages::new(first)?;
    match read_rest(arm, vm, &mut pages).await {
        Ok(()) => Ok((pages.result_line()?, String::new())),
        Err(e) => {
            // Best effort: a snapshot left behind is swept later by the next paged script.
            if let Err(cleanup) =
                run_script(arm, vm, &keys_paging::discard_script(pages.id())).await
            {
                tracing::debug!(vm = %vm.name, "could not discard the page snapshot: {cleanup}");
            }
            Err(e)
        }
    }
}

async fn read_rest(arm: &ArmClient, vm: &Vm, pages: &mut Pages) -> Result<(), WorkflowError> {
    while let Some(offset) = pages.next_offset() {
        let out = run_script(arm, vm, &keys_paging::next_page_script(pages.id(), offset)).await?;
        let page = keys_paging::find_page(&out.stdout)?.ok_or_else(|| {
            crate::windows::WindowsError::NoResult {
                stderr: out.stderr.clone(),
            }
        })?;
        pages.push(page)?;
    }
    Ok(())
}
