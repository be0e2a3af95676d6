//! The `AZSSH_MAX_*` limits reach every command that runs a script, the workflow verbs (which
//! run bundled runbooks and have no `--max-*` flags) included.

use azssh_emulator::testing::Emu;

use crate::Test;

#[test]
fn max_operations_env_stops_a_workflow_verb() {
    let emu = Emu::builder().vms(6).start_blocking();
    let vm = emu.ready_vm();
    let verb = ["enable-ssh", "-g", &vm.resource_group, "-n", &vm.name];

    let out = Test::azssh(&emu, &verb)
        .env("AZSSH_MAX_OPERATIONS", "10")
        .status(1)
        .stderr_contains("operations limit")
        .run();
    assert!(
        emu.handle.stats().run_commands.values().sum::<u64>() == 0,
        "the verb ran on the VM before the limit stopped it: {out:?}"
    );

    // The same verb without the limit does its work: the limit, not the VM, stopped it.
    Test::azssh(&emu, &verb).run();
}

#[test]
fn malformed_limit_env_is_a_usage_error_for_workflow_verbs() {
    let emu = Emu::builder().vms(2).guests(false).start_blocking();
    let vm = emu.handle.vms().remove(0);
    Test::azssh(
        &emu,
        &["enable-ssh", "-g", &vm.resource_group, "-n", &vm.name],
    )
    .env("AZSSH_MAX_OPERATIONS", "lots")
    .status(2)
    .stderr_contains("`AZSSH_MAX_OPERATIONS` is `lots`, not a valid limit")
    .run();
}
