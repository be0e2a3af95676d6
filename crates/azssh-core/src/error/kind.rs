//! Every error kind, the stable identifier a script matches on (`e.kind == "azure.throttled"`):
//! a contract with scripts, listed once so a rename is a deliberate, tested change.

// The product's domains (script, repl, fleet, output) are listed here too, beside core's: the
// kinds are one namespace that scripts see, whichever crate raises them.

/// The run was cancelled (Ctrl-C); not catchable by a script's `try`/`catch`.
pub const CANCELLED: &str = "cancelled";
/// The run's `--timeout` passed; not catchable either.
pub const DEADLINE: &str = "deadline";

/// Resource Manager answers and the ARM client (`azssh-core::azure`).
pub mod azure {
    pub const BAD_ENDPOINT: &str = "azure.bad_endpoint";
    pub const BAD_REQUEST: &str = "azure.bad_request";
    pub const BAD_RESOURCE_ID: &str = "azure.bad_resource_id";
    pub const CONFLICT: &str = "azure.conflict";
    pub const DECODE: &str = "azure.decode";
    pub const FORBIDDEN: &str = "azure.forbidden";
    pub const FOREIGN_HOST: &str = "azure.foreign_host";
    pub const INSECURE_ENDPOINT: &str = "azure.insecure_endpoint";
    pub const INVALID_INPUT: &str = "azure.invalid_input";
    pub const INVALID_SOURCE: &str = "azure.invalid_source";
    pub const NO_CREDENTIAL: &str = "azure.no_credential";
    pub const NO_JIT_POLICY: &str = "azure.no_jit_policy";
    pub const GRAPH_TRUNCATED: &str = "azure.graph_truncated";
    pub const NO_SUBSCRIPTION: &str = "azure.no_subscription";
    pub const NOT_FOUND: &str = "azure.not_found";
    pub const OPERATION_FAILED: &str = "azure.operation_failed";
    pub const OPERATION_NOT_ALLOWED: &str = "azure.operation_not_allowed";
    pub const OPERATION_TIMEOUT: &str = "azure.operation_timeout";
    pub const PRIORITY_TAKEN: &str = "azure.priority_taken";
    pub const RULE_CONFLICT: &str = "azure.rule_conflict";
    pub const RUN_COMMAND_BUSY: &str = "azure.run_command_busy";
    pub const SERVER_ERROR: &str = "azure.server_error";
    pub const THROTTLED: &str = "azure.throttled";
    pub const TIMEOUT: &str = "azure.timeout";
    pub const TRANSPORT: &str = "azure.transport";
    pub const UNAUTHORIZED: &str = "azure.unauthorized";
    pub const UNEXPECTED_RESPONSE: &str = "azure.unexpected_response";
    pub const UNKNOWN_CLOUD: &str = "azure.unknown_cloud";
}

/// SSH connections, host keys, tunnels and SFTP (`azssh-core::ssh`, the product's `ssh` API).
pub mod ssh {
    pub const AUTH_FAILED: &str = "ssh.auth_failed";
    pub const BAD_PORT: &str = "ssh.bad_port";
    pub const CONFIG: &str = "ssh.config";
    pub const CONNECT_REFUSED: &str = "ssh.connect_refused";
    pub const CONNECT_TIMEOUT: &str = "ssh.connect_timeout";
    pub const DISCONNECTED: &str = "ssh.disconnected";
    pub const EXEC_TIMEOUT: &str = "ssh.exec_timeout";
    pub const HOST_KEY_CHANGED: &str = "ssh.host_key_changed";
    pub const HOST_KEY_REJECTED: &str = "ssh.host_key_rejected";
    pub const HOST_KEY_REVOKED: &str = "ssh.host_key_revoked";
    pub const INVALID_FORWARD: &str = "ssh.invalid_forward";
    pub const IO: &str = "ssh.io";
    pub const KEY: &str = "ssh.key";
    pub const KEY_PERMISSIONS: &str = "ssh.key_permissions";
    pub const KNOWN_HOSTS: &str = "ssh.known_hosts";
    pub const LISTEN: &str = "ssh.listen";
    pub const NO_ADDRESS: &str = "ssh.no_address";
    pub const NOT_A_TERMINAL: &str = "ssh.not_a_terminal";
    pub const PROTOCOL: &str = "ssh.protocol";
    pub const RESOLVE: &str = "ssh.resolve";
    pub const SESSION_CLOSED: &str = "ssh.session_closed";
    pub const SFTP: &str = "ssh.sftp";
    pub const SFTP_UNSAFE_NAME: &str = "ssh.sftp_unsafe_name";
    pub const UNKNOWN_HOST: &str = "ssh.unknown_host";
    pub const UNREACHABLE: &str = "ssh.unreachable";
}

/// Local SSH key files (`azssh-core::ssh::keys`).
pub mod key {
    pub const BAD_SIZE: &str = "key.bad_size";
    pub const EMPTY: &str = "key.empty";
    pub const EXISTS: &str = "key.exists";
    pub const GENERATE: &str = "key.generate";
    pub const MALFORMED: &str = "key.malformed";
    pub const MULTIPLE: &str = "key.multiple";
    pub const NOT_A_KEY: &str = "key.not_a_key";
    pub const OPTIONS: &str = "key.options";
    pub const READ: &str = "key.read";
    pub const TOO_SHORT: &str = "key.too_short";
    pub const UNSUPPORTED: &str = "key.unsupported";
    pub const WRITE: &str = "key.write";
}

/// The PowerShell result protocol and Windows setup steps (`azssh-core::windows`).
pub mod windows {
    pub const BAD_ENCODED_COMMAND: &str = "windows.bad_encoded_command";
    pub const CAPABILITY_INSTALL: &str = "windows.capability_install";
    pub const CAPABILITY_UNAVAILABLE: &str = "windows.capability_unavailable";
    pub const INVALID_USER: &str = "windows.invalid_user";
    pub const KEY_NOT_VERIFIED: &str = "windows.key_not_verified";
    pub const LAST_KEY: &str = "windows.last_key";
    pub const MALFORMED_RESULT: &str = "windows.malformed_result";
    pub const MISSING_STEP: &str = "windows.missing_step";
    pub const NO_RESULT: &str = "windows.no_result";
    pub const STEP_FAILED: &str = "windows.step_failed";
    pub const WSUS_BLOCKS_CAPABILITY: &str = "windows.wsus_blocks_capability";
    pub const USER_NOT_ALLOWED: &str = "windows.user_not_allowed";
    pub const DISK_FULL: &str = "windows.disk_full";
}

/// The enable/open-port/pin workflow's policy (`azssh-core::workflow`).
pub mod workflow {
    pub const CHECK_FAILED: &str = "workflow.check_failed";
    pub const EXTENSION_FAILED: &str = "workflow.extension_failed";
    pub const INTERNET_WIDE_SOURCE: &str = "workflow.internet_wide_source";
    pub const INVALID_DATE: &str = "workflow.invalid_date";
    pub const INVALID_FINGERPRINT: &str = "workflow.invalid_fingerprint";
    pub const INVALID_SHELL: &str = "workflow.invalid_shell";
    pub const JIT_ONE_SOURCE: &str = "workflow.jit_one_source";
    pub const NO_HOST_KEYS: &str = "workflow.no_host_keys";
    pub const NO_NSG: &str = "workflow.no_nsg";
    /// Every conditional write to an NSG was refused with 412: someone kept changing it.
    pub const NSG_CHANGED_MEANWHILE: &str = "workflow.nsg_changed_meanwhile";
    pub const NO_PRIVATE_IP: &str = "workflow.no_private_ip";
    pub const NO_PRIVATE_KEY: &str = "workflow.no_private_key";
    pub const NO_PUBLIC_IP: &str = "workflow.no_public_ip";
    pub const NOT_RUNNING: &str = "workflow.not_running";
    pub const NOT_WINDOWS: &str = "workflow.not_windows";
    pub const ONE_SOURCE_ONLY: &str = "workflow.one_source_only";
    pub const RULE_NAME_TAKEN: &str = "workflow.rule_name_taken";
    pub const BLOCKED_BY_DENY: &str = "workflow.blocked_by_deny";
    pub const AGENT_NOT_READY: &str = "workflow.agent_not_ready";
    pub const SSHD_PORT: &str = "workflow.sshd_port";
}

/// Bounded local file reads (`azssh-core::local_file`).
pub mod io {
    pub const FILE: &str = "io.file";
}

/// The RDP client probe and the `rdp` verb.
pub mod rdp {
    pub const CLOSED: &str = "rdp.closed";
    pub const IO: &str = "rdp.io";
    pub const LAUNCH: &str = "rdp.launch";
    pub const NOT_RDP: &str = "rdp.not_rdp";
    pub const TIMEOUT: &str = "rdp.timeout";
    pub const UNREACHABLE: &str = "rdp.unreachable";
}

/// Writing to stdout/stderr (the product's `output`).
pub mod output {
    pub const WRITE: &str = "output.write";
    /// `--query`: the JMESPath expression failed on the output (a type error at run time).
    pub const QUERY: &str = "output.query";
}

/// The Rhai engine: syntax, runtime, limits, modules (the product's `script`).
pub mod script {
    pub const BAD_ARGUMENT: &str = "script.bad_argument";
    pub const CALL_DEPTH_LIMIT: &str = "script.call_depth_limit";
    pub const COMMAND_FAILED: &str = "script.command_failed";
    pub const CRASHED: &str = "script.crashed";
    pub const DATA_LIMIT: &str = "script.data_limit";
    pub const ERROR: &str = "script.error";
    pub const FUNCTION_NOT_FOUND: &str = "script.function_not_found";
    pub const JSON: &str = "script.json";
    pub const LOAD: &str = "script.load";
    pub const MODULE_NOT_FOUND: &str = "script.module_not_found";
    pub const OPERATIONS_LIMIT: &str = "script.operations_limit";
    pub const OUTPUT: &str = "script.output";
    pub const SYNTAX: &str = "script.syntax";
    pub const THROWN: &str = "script.thrown";
    pub const VARIABLE_NOT_FOUND: &str = "script.variable_not_found";
}

/// The interactive shell (the product's `repl`).
pub mod repl {
    pub const MISSING_ARGUMENT: &str = "repl.missing_argument";
    pub const TERMINAL: &str = "repl.terminal";
    pub const UNKNOWN_COMMAND: &str = "repl.unknown_command";
    pub const UNKNOWN_FUNCTION: &str = "repl.unknown_function";
    pub const WRITE: &str = "repl.write";
}

/// Fleet runs: targets, shards, journal (the product's `fleet`).
pub mod fleet {
    pub const BAD_MAX_FAIL: &str = "fleet.bad_max_fail";
    pub const BAD_SHARD: &str = "fleet.bad_shard";
    pub const BAD_TAG: &str = "fleet.bad_tag";
    pub const FAILED: &str = "fleet.failed";
    pub const INTERRUPTED: &str = "fleet.interrupted";
    pub const JOURNAL: &str = "fleet.journal";
    pub const NO_TARGETS: &str = "fleet.no_targets";
    pub const QUERY_WITHOUT_ID: &str = "fleet.query_without_id";
    pub const TARGETS_FILE: &str = "fleet.targets_file";
    pub const UNKNOWN: &str = "fleet.unknown";
}

/// How bytes reach a VM: Azure Bastion tunnels, jump hosts, the path choice (`azssh-core::ssh::route`).
pub mod route {
    pub const BAD_JUMP: &str = "route.bad_jump";
    pub const BASTION_DROPPED: &str = "route.bastion_dropped";
    pub const BASTION_NOT_FOUND: &str = "route.bastion_not_found";
    pub const BASTION_REFUSED: &str = "route.bastion_refused";
    pub const BASTION_UNSUPPORTED: &str = "route.bastion_unsupported";
    pub const CA_BUNDLE: &str = "route.ca_bundle";
    pub const JUMP_REFUSED: &str = "route.jump_refused";
    pub const NO_ROUTE: &str = "route.no_route";
}

/// Every kind, for the contract test and for tools that list them.
pub const ALL: &[&str] = &[
    CANCELLED,
    DEADLINE,
    azure::BAD_ENDPOINT,
    azure::BAD_REQUEST,
    azure::BAD_RESOURCE_ID,
    azure::CONFLICT,
    azure::DECODE,
    azure::FORBIDDEN,
    azure::FOREIGN_HOST,
    azure::INSECURE_ENDPOINT,
    azure::INVALID_INPUT,
    azure::INVALID_SOURCE,
    azure::NO_CREDENTIAL,
    azure::NO_JIT_POLICY,
    azure::GRAPH_TRUNCATED,
    azure::NO_SUBSCRIPTION,
    azure::NOT_FOUND,
    azure::OPERATION_FAILED,
    azure::OPERATION_NOT_ALLOWED,
    azure::OPERATION_TIMEOUT,
    azure::PRIORITY_TAKEN,
    azure::RULE_CONFLICT,
    azure::RUN_COMMAND_BUSY,
    azure::SERVER_ERROR,
    azure::THROTTLED,
    azure::TIMEOUT,
    azure::TRANSPORT,
    azure::UNAUTHORIZED,
    azure::UNEXPECTED_RESPONSE,
    azure::UNKNOWN_CLOUD,
    ssh::AUTH_FAILED,
    ssh::BAD_PORT,
    ssh::CONFIG,
    ssh::CONNECT_REFUSED,
    ssh::CONNECT_TIMEOUT,
    ssh::DISCONNECTED,
    ssh::EXEC_TIMEOUT,
    ssh::HOST_KEY_CHANGED,
    ssh::HOST_KEY_REJECTED,
    ssh::HOST_KEY_REVOKED,
    ssh::INVALID_FORWARD,
    ssh::IO,
    ssh::KEY,
    ssh::KEY_PERMISSIONS,
    ssh::KNOWN_HOSTS,
    ssh::LISTEN,
    ssh::NO_ADDRESS,
    ssh::NOT_A_TERMINAL,
    ssh::PROTOCOL,
    ssh::RESOLVE,
    ssh::SESSION_CLOSED,
    ssh::SFTP,
    ssh::SFTP_UNSAFE_NAME,
    ssh::UNKNOWN_HOST,
    ssh::UNREACHABLE,
    key::BAD_SIZE,
    key::EMPTY,
    key::EXISTS,
    key::GENERATE,
    key::MALFORMED,
    key::MULTIPLE,
    key::NOT_A_KEY,
    key::OPTIONS,
    key::READ,
    key::TOO_SHORT,
    key::UNSUPPORTED,
    key::WRITE,
    windows::BAD_ENCODED_COMMAND,
    windows::CAPABILITY_INSTALL,
    windows::CAPABILITY_UNAVAILABLE,
    windows::INVALID_USER,
    windows::KEY_NOT_VERIFIED,
    windows::LAST_KEY,
    windows::MALFORMED_RESULT,
    windows::MISSING_STEP,
    windows::NO_RESULT,
    windows::STEP_FAILED,
    windows::WSUS_BLOCKS_CAPABILITY,
    windows::USER_NOT_ALLOWED,
    windows::DISK_FULL,
    workflow::CHECK_FAILED,
    workflow::EXTENSION_FAILED,
    workflow::INTERNET_WIDE_SOURCE,
    workflow::INVALID_DATE,
    workflow::INVALID_FINGERPRINT,
    workflow::INVALID_SHELL,
    workflow::JIT_ONE_SOURCE,
    workflow::NO_HOST_KEYS,
    workflow::NO_NSG,
    workflow::NO_PRIVATE_IP,
    workflow::NO_PRIVATE_KEY,
    workflow::NO_PUBLIC_IP,
    workflow::NOT_RUNNING,
    workflow::NOT_WINDOWS,
    workflow::ONE_SOURCE_ONLY,
    workflow::RULE_NAME_TAKEN,
    workflow::NSG_CHANGED_MEANWHILE,
    workflow::BLOCKED_BY_DENY,
    workflow::AGENT_NOT_READY,
    workflow::SSHD_PORT,
    io::FILE,
    rdp::CLOSED,
    rdp::IO,
    rdp::LAUNCH,
    rdp::NOT_RDP,
    rdp::TIMEOUT,
    rdp::UNREACHABLE,
    output::WRITE,
    output::QUERY,
    script::BAD_ARGUMENT,
    script::CALL_DEPTH_LIMIT,
    script::COMMAND_FAILED,
    script::CRASHED,
    script::DATA_LIMIT,
    script::ERROR,
    script::FUNCTION_NOT_FOUND,
    script::JSON,
    script::LOAD,
    script::MODULE_NOT_FOUND,
    script::OPERATIONS_LIMIT,
    script::OUTPUT,
    script::SYNTAX,
    script::THROWN,
    script::VARIABLE_NOT_FOUND,
    repl::MISSING_ARGUMENT,
    repl::TERMINAL,
    repl::UNKNOWN_COMMAND,
    repl::UNKNOWN_FUNCTION,
    repl::WRITE,
    fleet::BAD_MAX_FAIL,
    fleet::BAD_SHARD,
    fleet::BAD_TAG,
    fleet::FAILED,
    fleet::INTERRUPTED,
    fleet::JOURNAL,
    fleet::NO_TARGETS,
    fleet::QUERY_WITHOUT_ID,
    fleet::TARGETS_FILE,
    fleet::UNKNOWN,
    route::BAD_JUMP,
    route::BASTION_DROPPED,
    route::BASTION_NOT_FOUND,
    route::BASTION_REFUSED,
    route::BASTION_UNSUPPORTED,
    route::CA_BUNDLE,
    route::JUMP_REFUSED,
    route::NO_ROUTE,
];

/// Failures worth running a VM's script again for (`azssh fleet --retries`): the request never
/// took effect or ARM asks to come back later — throttling (429), server errors (5xx),
/// connection resets and timeouts, and RunCommand busy with another run.
///
/// Not transient: an operation Azure accepted and that then failed or timed out
/// (`azure.operation_failed`, `azure.operation_timeout`: it ran, or may still run, so a rerun
/// would repeat its effects), script errors and throws, and 4xx answers (they fail again).
pub fn is_transient(kind: &str) -> bool {
    matches!(
        kind,
        azure::THROTTLED
            | azure::SERVER_ERROR
            | azure::TRANSPORT
            | azure::TIMEOUT
            | azure::RUN_COMMAND_BUSY
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kinds are a contract with scripts (`if e.kind == "azure.throttled"`): renaming,
    /// adding or dropping one must change this list on purpose.
    #[test]
    fn every_error_kind_is_listed() {
        let expected = [
            "cancelled",
            "deadline",
            "azure.bad_endpoint",
            "azure.bad_request",
            "azure.bad_resource_id",
            "azure.conflict",
            "azure.decode",
            "azure.forbidden",
            "azure.foreign_host",
            "azure.insecure_endpoint",
            "azure.invalid_input",
            "azure.invalid_source",
            "azure.no_credential",
            "azure.no_jit_policy",
            "azure.graph_truncated",
            "azure.no_subscription",
            "azure.not_found",
            "azure.operation_failed",
            "azure.operation_not_allowed",
            "azure.operation_timeout",
            "azure.priority_taken",
            "azure.rule_conflict",
            "azure.run_command_busy",
            "azure.server_error",
            "azure.throttled",
            "azure.timeout",
            "azure.transport",
            "azure.unauthorized",
            "azure.unexpected_response",
            "azure.unknown_cloud",
            "ssh.auth_failed",
            "ssh.bad_port",
            "ssh.config",
            "ssh.connect_refused",
            "ssh.connect_timeout",
            "ssh.disconnected",
            "ssh.exec_timeout",
            "ssh.host_key_changed",
            "ssh.host_key_rejected",
            "ssh.host_key_revoked",
            "ssh.invalid_forward",
            "ssh.io",
            "ssh.key",
            "ssh.key_permissions",
            "ssh.known_hosts",
            "ssh.listen",
            "ssh.no_address",
            "ssh.not_a_terminal",
            "ssh.protocol",
            "ssh.resolve",
            "ssh.session_closed",
            "ssh.sftp",
            "ssh.sftp_unsafe_name",
            "ssh.unknown_host",
            "ssh.unreachable",
            "key.bad_size",
            "key.empty",
            "key.exists",
            "key.generate",
            "key.malformed",
            "key.multiple",
            "key.not_a_key",
            "key.options",
            "key.read",
            "key.too_short",
            "key.unsupported",
            "key.write",
            "windows.bad_encoded_command",
            "windows.capability_install",
            "windows.capability_unavailable",
            "windows.invalid_user",
            "windows.key_not_verified",
            "windows.last_key",
            "windows.malformed_result",
            "windows.missing_step",
            "windows.no_result",
            "windows.step_failed",
            "windows.wsus_blocks_capability",
            "windows.user_not_allowed",
            "windows.disk_full",
            "workflow.check_failed",
            "workflow.extension_failed",
            "workflow.internet_wide_source",
            "workflow.invalid_date",
            "workflow.invalid_fingerprint",
            "workflow.invalid_shell",
            "workflow.jit_one_source",
            "workflow.no_host_keys",
            "workflow.no_nsg",
            "workflow.no_private_ip",
            "workflow.no_private_key",
            "workflow.no_public_ip",
            "workflow.not_running",
            "workflow.not_windows",
            "workflow.one_source_only",
            "workflow.rule_name_taken",
            "workflow.nsg_changed_meanwhile",
            "workflow.blocked_by_deny",
            "workflow.agent_not_ready",
            "workflow.sshd_port",
            "io.file",
            "rdp.closed",
            "rdp.io",
            "rdp.launch",
            "rdp.not_rdp",
            "rdp.timeout",
            "rdp.unreachable",
            "output.write",
            "output.query",
            "script.bad_argument",
            "script.call_depth_limit",
            "script.command_failed",
            "script.crashed",
            "script.data_limit",
            "script.error",
            "script.function_not_found",
            "script.json",
            "script.load",
            "script.module_not_found",
            "script.operations_limit",
            "script.output",
            "script.syntax",
            "script.thrown",
            "script.variable_not_found",
            "repl.missing_argument",
            "repl.terminal",
            "repl.unknown_command",
            "repl.unknown_function",
            "repl.write",
            "fleet.bad_max_fail",
            "fleet.bad_shard",
            "fleet.bad_tag",
            "fleet.failed",
            "fleet.interrupted",
            "fleet.journal",
            "fleet.no_targets",
            "fleet.query_without_id",
            "fleet.targets_file",
            "fleet.unknown",
            "route.bad_jump",
            "route.bastion_dropped",
            "route.bastion_not_found",
            "route.bastion_refused",
            "route.bastion_unsupported",
            "route.ca_bundle",
            "route.jump_refused",
            "route.no_route",
        ];
        assert_eq!(ALL, expected.as_slice());
    }

    #[test]
    fn kinds_are_unique_and_domain_dotted() {
        let mut seen = std::collections::HashSet::new();
        for k in ALL {
            assert!(seen.insert(*k), "{k} listed twice");
            let dotted = k.split_once('.').is_some_and(|(d, n)| {
                !d.is_empty()
                    && !n.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_lowercase() || c == '_' || c == '.')
            });
            assert!(dotted || [CANCELLED, DEADLINE].contains(k), "{k}");
        }
    }

    #[test]
    fn only_requests_that_never_took_effect_are_transient() {
        for k in [
            azure::THROTTLED,
            azure::SERVER_ERROR,
            azure::TRANSPORT,
            azure::TIMEOUT,
            azure::RUN_COMMAND_BUSY,
        ] {
            assert!(is_transient(k), "{k}");
        }
        for k in [
            azure::OPERATION_FAILED,
            azure::OPERATION_TIMEOUT,
            azure::NOT_FOUND,
            script::ERROR,
        ] {
            assert!(!is_transient(k), "{k}");
        }
    }
}
