//! Private VMs (no public IP) of the emulated world, reached through the emulator's Azure
//! Bastion (TLS WebSocket data plane, its own CA in `AZSSH_CA_BUNDLE`) and through a real
//! OpenSSH sshd on loopback as jump host: with azssh's verbs and scripts, and with the real
//! OpenSSH `ssh`/`scp` through `ProxyCommand azssh proxy` written by `azssh ssh-config`, host
//! keys verified on every path.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use azssh::azure::ArmClient;
use azssh::azure::run_command::{RunCommandOptions, run_powershell};
use azssh::azure::vm::{Vm, get_vm};
use azssh::ssh::keys::SshPublicKey;
use azssh::windows::authorized_keys::KeyTarget;
use azssh::windows::combined::GuestScript;
use azssh::windows::result::ScriptResult;
use azssh::workflow::nsg::{OpenPort, open_port};
use azssh_emulator::testing::Emu;
use sha2::{Digest, Sha256};

use crate::Test;
use crate::emulator_ssh::client;
use crate::harness::{stderr_of, stdout_of};

/// A private guest with sshd running, the NSG admitting `sources`, the key installed and its
/// host keys pinned in azssh's own known_hosts (`<home>/.config/azssh/known_hosts`) under the
/// VM's private address.
struct Private {
    emu: Emu,
    vm: Vm,
    home: tempfile::TempDir,
    key: PathBuf,
}

async fn emulator() -> Emu {
    Emu::builder().vms(4).bastions(true).start().await
}

impl Private {
    /// `port`: the SSH port the path ends at, which the host keys are pinned under (22 behind
    /// the bastion, as on Azure; the guests' loopback port on the jump path).
    async fn prepare(emu: Emu, tag: &str, key: &Path, sources: Vec<String>, port: u16) -> Private {
        let arm = client(&emu);
        let summary = emu.private_vm_tagged(tag);
        let vm = get_vm(&arm, &summary.resource_group, &summary.name)
            .await
            .expect("vm");
        assert!(vm.public_ip.is_none(), "a private VM");
        let public = std::fs::read_to_string(key.with_extension("pub")).expect("pub");
        let public = SshPublicKey::parse(public.trim()).expect("pub");
        let host_keys = install(&arm, &vm, public).await;
        let home = tempfile::tempdir().expect("home");
        let pinned_dir = home.path().join(".config/azssh");
        std::fs::create_dir_all(&pinned_dir).expect("config dir");
        let private = vm.private_ip.clone().expect("private ip");
        let host = if port == 22 {
            private
        } else {
            format!("[{private}]:{port}")
        };
        let lines: Vec<String> = host_keys.iter().map(|k| format!("{host} {k}")).collect();
        std::fs::write(pinned_dir.join("known_hosts"), lines.join("\n") + "\n").expect("pin");
        open_port(
            &arm,
            &vm,
            &OpenPort {
                port: 22,
                sources,
                permanent: true,
                ..Default::default()
            },
        )
        .await
        .expect("open port");
        Private {
            emu,
            vm,
            home,
            key: key.to_path_buf(),
        }
    }

    fn known_hosts(&self) -> PathBuf {
        self.home.path().join(".config/azssh/known_hosts")
    }

    /// `azssh connect -i KEY --jump HOP -- hostname` to this VM.
    fn hostname_through(&self, key: &Path, hop: &str) -> Test {
        let key = key.display().to_string();
        let (rg, name) = (&self.vm.resource_group, &self.vm.name);
        self.azssh(&[
            "connect", "-g", rg, "-n", name, "-i", &key, "--jump", hop, "--", "hostname",
        ])
    }

    /// Trusts `jump`'s host key like any other host's, and gives the jump host its own key in
    /// `~/.ssh/config` (`-i` is the destination's, as with `ssh -J`).
    fn trust_jump_host(&self, jump: &crate::sshd::Sshd, key: &Path) {
        let mut known = std::fs::read_to_string(self.known_hosts()).expect("pinned");
        known.push_str(&jump.known_hosts_line());
        std::fs::write(self.known_hosts(), known).expect("known_hosts");
        let ssh_dir = self.home.path().join(".ssh");
        std::fs::create_dir_all(&ssh_dir).expect(".ssh");
        std::fs::write(
            ssh_dir.join("config"),
            format!("Host 127.0.0.1\n    IdentityFile {}\n", key.display()),
        )
        .expect("ssh config");
    }

    /// The environment of every process: the emulator's exports, this home, no agent.
    fn env(&self) -> Vec<(String, String)> {
        let mut env = self.emu.env();
        let home = self.home.path().display().to_string();
        env.push(("HOME".into(), home.clone()));
        env.push(("XDG_CONFIG_HOME".into(), format!("{home}/.config")));
        env.push(("SSH_AUTH_SOCK".into(), "/nonexistent/agent.sock".into()));
        env
    }

    /// `azssh ARGS` with this environment.
    fn azssh(&self, args: &[&str]) -> Test {
        Test::new().envs(self.env()).args(args)
    }

    /// `azssh ssh-config -g RG -i KEY -f FILE`: the file.
    fn ssh_config(&self) -> PathBuf {
        let file = self.home.path().join("azssh_config");
        let key = self.key.display().to_string();
        let out = self
            .azssh(&[
                "ssh-config",
                "-g",
                &self.vm.resource_group,
                "-i",
                &key,
                "-f",
                &file.display().to_string(),
                "--port",
                "22",
            ])
            .run();
        assert!(stderr_of(&out).contains("wrote"), "{}", stderr_of(&out));
        file
    }

    fn alias(&self) -> String {
        format!("{}.{}", self.vm.resource_group, self.vm.name)
    }

    /// A real OpenSSH client command with this environment (`ProxyCommand` inherits it).
    fn openssh(&self, program: &str, config: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.arg("-F")
            .arg(config)
            .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=60"])
            .stdin(Stdio::null());
        for (k, v) in self.env() {
            cmd.env(k, v);
        }
        cmd
    }
}

/// Enables sshd, installs `public` for administrators and reads the host keys (RunCommand).
async fn install(arm: &ArmClient, vm: &Vm, public: SshPublicKey) -> Vec<String> {
    let script = GuestScript::new()
        .setup()
        .install_key(public, KeyTarget::Administrators)
        .read_host_keys()
        .build();
    let lines: Vec<String> = script.lines().map(str::to_string).collect();
    let out = run_powershell(arm, &vm.id, &lines, &RunCommandOptions::default())
        .await
        .expect("runcommand");
    let result = ScriptResult::parse(&out.stdout, &out.stderr).expect("result line");
    result
        .host_keys()
        .expect("host keys")
        .iter()
        .map(|k| k.to_line())
        .collect()
}

fn openssh_present() -> bool {
    let present = Command::new("ssh").arg("-V").output().is_ok();
    if !present {
        if std::env::var("AZSSH_REQUIRE_SSHD").as_deref() == Ok("1") {
            panic!("OpenSSH client `ssh` not found and AZSSH_REQUIRE_SSHD=1");
        }
        eprintln!("SKIPPED: OpenSSH client `ssh` not found");
    }
    present
}

fn keygen(dir: &Path) -> PathBuf {
    let key = dir.join("id_ed25519");
    crate::sshd::keygen(&key, "ed25519", "", false);
    key
}

/// The `AzureBastionSubnet` prefix of the bastion serving the `private-bastion` VM.
fn bastion_prefix(emu: &Emu) -> String {
    emu.bastion_tagged("bastion-ok")
        .subnet_prefix
        .expect("subnet prefix")
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("join")
}

/// Waits for every copy (`(process, where it wrote)`) and checks each arrived whole: `want` is
/// the source's SHA-256.
async fn all_copied(children: Vec<(std::process::Child, PathBuf)>, want: &str, what: &str) {
    let results = blocking(move || {
        children
            .into_iter()
            .map(|(c, back)| (c.wait_with_output().expect("wait"), back))
            .collect::<Vec<_>>()
    })
    .await;
    for (out, back) in results {
        assert!(out.status.success(), "{what} failed: {}", stderr_of(&out));
        assert_eq!(sha256(&std::fs::read(back).expect("copy")), want);
    }
}

fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

fn websockets(emu: &Emu) -> u64 {
    emu.handle
        .bastion_faults()
        .expect("bastions on")
        .websockets_opened()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_reaches_a_private_vm_through_proxycommand_with_host_keys_verified() {
    if !openssh_present() {
        return;
    }
    let emu = emulator().await;
    let keys = tempfile::tempdir().expect("keys");
    let key = keygen(keys.path());
    let prefix = bastion_prefix(&emu);
    let p = Private::prepare(emu, "private-bastion", &key, vec![prefix], 22).await;
    let config = p.ssh_config();
    let text = std::fs::read_to_string(&config).expect("config");
    assert!(text.contains(&format!("Host {}\n", p.alias())), "{text}");
    assert!(text.contains("StrictHostKeyChecking yes"), "{text}");
    assert!(text.contains(" proxy -g "), "{text}");
    let before = websockets(&p.emu);

    let p = std::sync::Arc::new(p);
    let q = p.clone();
    let (out, config) = blocking(move || {
        let out = q
            .openssh("ssh", &config)
            .arg(q.alias())
            .arg("hostname")
            .output()
            .expect("ssh");
        (out, config)
    })
    .await;
    assert!(out.status.success(), "ssh failed: {}", stderr_of(&out));
    let computer = p.vm.computer_name.clone().expect("computer name");
    assert_eq!(
        stdout_of(&out).trim().to_lowercase(),
        computer.to_lowercase()
    );
    assert!(
        websockets(&p.emu) > before,
        "the session went through the bastion"
    );

    // scp both ways, byte-exact.
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let local = p.home.path().join("payload.bin");
    std::fs::write(&local, &payload).expect("payload");
    let back = p.home.path().join("back.bin");
    let remote = format!(
        "{}:C:/Users/{}/payload.bin",
        p.alias(),
        p.vm.admin_username.clone().expect("admin")
    );
    let q = p.clone();
    let (up, down) = blocking({
        let (config, local, back, remote) =
            (config.clone(), local.clone(), back.clone(), remote.clone());
        move || {
            let up = q
                .openssh("scp", &config)
                .arg(&local)
                .arg(&remote)
                .output()
                .expect("scp");
            let down = q
                .openssh("scp", &config)
                .arg(&remote)
                .arg(&back)
                .output()
                .expect("scp");
            (up, down)
        }
    })
    .await;
    assert!(up.status.success(), "scp up: {}", stderr_of(&up));
    assert!(down.status.success(), "scp down: {}", stderr_of(&down));
    assert_eq!(
        sha256(&std::fs::read(&back).expect("back")),
        sha256(&payload)
    );

    // The pinned keys are what let ssh in: without them, OpenSSH refuses the host.
    std::fs::write(p.known_hosts(), "").expect("unpin");
    let q = p.clone();
    let refused = blocking(move || {
        q.openssh("ssh", &config)
            .arg(q.alias())
            .arg("hostname")
            .output()
            .expect("ssh")
    })
    .await;
    assert!(!refused.status.success());
    assert!(
        stderr_of(&refused).contains("Host key verification failed"),
        "{}",
        stderr_of(&refused)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_connections_through_the_bastion_at_once_while_a_ninth_is_reset() {
    if !openssh_present() {
        return;
    }
    let emu = emulator().await;
    let keys = tempfile::tempdir().expect("keys");
    let key = keygen(keys.path());
    let prefix = bastion_prefix(&emu);
    let p =
        std::sync::Arc::new(Private::prepare(emu, "private-bastion", &key, vec![prefix], 22).await);
    let config = p.ssh_config();
    let admin = p.vm.admin_username.clone().expect("admin");
    let payload: Vec<u8> = (0..1_500_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let local = p.home.path().join("big.bin");
    std::fs::write(&local, &payload).expect("payload");
    let remote_path = format!("C:/Users/{admin}/big.bin");
    let q = p.clone();
    let up = blocking({
        let (config, local, remote) = (
            config.clone(),
            local.clone(),
            format!("{}:{remote_path}", p.alias()),
        );
        move || {
            q.openssh("scp", &config)
                .arg(&local)
                .arg(&remote)
                .output()
                .expect("scp")
        }
    })
    .await;
    assert!(up.status.success(), "scp up: {}", stderr_of(&up));
    let want = sha256(&payload);

    // 1. Eight real OpenSSH sessions through `ProxyCommand azssh proxy`, each its own WebSocket.
    let before = websockets(&p.emu);
    let mut children = Vec::new();
    for i in 0..8 {
        let back = p.home.path().join(format!("proxy-{i}.bin"));
        let child = p
            .openssh("scp", &config)
            .arg(format!("{}:{remote_path}", p.alias()))
            .arg(&back)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("scp");
        children.push((child, back));
    }
    // Once all eight are up, the next WebSocket (a ninth session) is cut mid-stream.
    wait_for(|| websockets(&p.emu) >= before + 8).await;
    p.emu
        .handle
        .bastion_faults()
        .expect("faults")
        .reset_websocket(1, 20_000);
    let ninth_back = p.home.path().join("proxy-9.bin");
    let ninth = p
        .openssh("scp", &config)
        .arg(format!("{}:{remote_path}", p.alias()))
        .arg(&ninth_back)
        .stderr(Stdio::piped())
        .output();
    all_copied(children, &want, "a parallel scp").await;
    let ninth = ninth.expect("ninth scp");
    assert!(!ninth.status.success(), "the reset session must fail");
    let said = stderr_of(&ninth);
    assert!(
        said.contains("dropped"),
        "a clear error, not silence: {said}"
    );
    assert!(websockets(&p.emu) >= before + 9);

    // 2. Plain TCP streams through one `azssh tunnel --resource-port 22` local port (as
    // `az network bastion tunnel`, but all at once), each its own WebSocket.
    // Kept alive: its temp dir is the process's working directory.
    let tunnel_test = p.azssh(&[
        "tunnel",
        "-g",
        &p.vm.resource_group,
        "-n",
        &p.vm.name,
        "--resource-port",
        "22",
    ]);
    let mut tunnel = tunnel_test
        .command()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tunnel");
    let mut line = String::new();
    BufReader::new(tunnel.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("address line");
    let local_port: u16 = line
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no address on stdout: {line:?}"));
    let private = p.vm.private_ip.clone().expect("private ip");
    let through_tunnel = |dest: &Path| {
        let mut cmd = Command::new("scp");
        cmd.args(["-B", "-P", &local_port.to_string()])
            .args([
                "-o",
                &format!("UserKnownHostsFile={}", p.known_hosts().display()),
            ])
            .args(["-o", "StrictHostKeyChecking=yes"])
            .args(["-o", &format!("HostKeyAlias={private}")])
            .arg("-i")
            .arg(&p.key)
            .arg(format!("{admin}@127.0.0.1:{remote_path}"))
            .arg(dest)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    };
    let before = websockets(&p.emu);
    let mut children = Vec::new();
    for i in 0..8 {
        let back = p.home.path().join(format!("tunnel-{i}.bin"));
        children.push((through_tunnel(&back).spawn().expect("scp"), back));
    }
    wait_for(|| websockets(&p.emu) >= before + 8).await;
    p.emu
        .handle
        .bastion_faults()
        .expect("faults")
        .reset_websocket(1, 20_000);
    let ninth = through_tunnel(&p.home.path().join("tunnel-9.bin")).output();
    all_copied(children, &want, "a stream through the tunnel").await;
    assert!(
        !ninth.expect("ninth").status.success(),
        "the reset stream must fail"
    );
    // The tunnel still serves new connections after the reset.
    let after = p.home.path().join("tunnel-10.bin");
    let out = through_tunnel(&after).output().expect("scp");
    assert!(out.status.success(), "after the reset: {}", stderr_of(&out));
    assert_eq!(sha256(&std::fs::read(&after).expect("copy")), want);
    let _ = tunnel.kill();
    let mut err = String::new();
    let _ = tunnel
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err);
    let _ = tunnel.wait();
    assert!(
        err.contains("dropped"),
        "the tunnel told which connection broke: {err}"
    );
}

async fn wait_for(done: impl Fn() -> bool) {
    for _ in 0..600 {
        if done() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("timed out waiting");
}

/// The `/16` of the private VM tagged `tag`: the jump host is "inside the VNet", so the guest's
/// NSG sees a VNet source.
async fn vnet_of(emu: &Emu, tag: &str) -> String {
    let summary = emu.private_vm_tagged(tag);
    let arm = client(emu);
    let vm = get_vm(&arm, &summary.resource_group, &summary.name)
        .await
        .expect("vm");
    let ip = vm.private_ip.expect("private ip");
    let octets: Vec<&str> = ip.split('.').collect();
    format!("{}.{}.0.0/16", octets[0], octets[1])
}

/// `ssh-keygen -lf`: the fingerprint OpenSSH (and sshd's log) prints for a key file.
fn openssh_fingerprint(key: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(key.with_extension("pub"))
        .output()
        .expect("ssh-keygen");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .expect("fingerprint")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_identity_file_goes_to_the_destination_and_never_to_a_jump_host() {
    // One failed key and this jump host hangs up; its log names every key offered.
    let Some(jump) = crate::sshd::start_with(
        "identity not offered to the jump host",
        "MaxAuthTries 1\nLogLevel VERBOSE\n",
    ) else {
        return;
    };
    let emu = emulator().await;
    let vnet = vnet_of(&emu, "private-bastion").await;
    let port = emu.guests().ssh_port();
    // The destination accepts only the key the jump host does not know.
    let target_key = jump.stranger_key.clone();
    let p = Private::prepare(emu, "private-bastion", &target_key, vec![vnet], port).await;
    p.trust_jump_host(&jump, &jump.ed25519_key);
    let hop = format!("{}@127.0.0.1:{}", jump.user, jump.port);
    let t = p.hostname_through(&target_key, &hop);
    let out = blocking(move || t.run()).await;
    let log = jump.log();
    assert!(
        out.status.success(),
        "{}\njump host log:\n{log}",
        stderr_of(&out)
    );
    let computer = p.vm.computer_name.clone().expect("computer name");
    assert_eq!(
        stdout_of(&out).trim().to_lowercase(),
        computer.to_lowercase()
    );
    let hop_key = openssh_fingerprint(&jump.ed25519_key);
    assert!(
        log.lines()
            .any(|l| l.contains("Accepted publickey") && l.contains(&hop_key)),
        "the jump host took its own key from ~/.ssh/config:\n{log}"
    );
    assert!(
        !log.contains(&openssh_fingerprint(&target_key)),
        "the destination's -i key reached the jump host:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_sshd_on_loopback_is_the_jump_host_to_a_private_guest() {
    let Some(jump) = crate::sshd::start("jump host") else {
        return;
    };
    let emu = emulator().await;
    let vnet = vnet_of(&emu, "private-bastion").await;
    let port = emu.guests().ssh_port();
    let p = Private::prepare(emu, "private-bastion", &jump.ed25519_key, vec![vnet], port).await;
    p.trust_jump_host(&jump, &jump.ed25519_key);
    let hop = format!("{}@127.0.0.1:{}", jump.user, jump.port);
    let key = jump.ed25519_key.display().to_string();
    let before = websockets(&p.emu);
    let t = p
        .hostname_through(Path::new(&key), &hop)
        .stderr_contains("through jump host");
    let out = blocking(move || t.run()).await;
    let computer = p.vm.computer_name.clone().expect("computer name");
    assert_eq!(
        stdout_of(&out).trim().to_lowercase(),
        computer.to_lowercase()
    );
    assert_eq!(websockets(&p.emu), before, "no bastion on the jump path");

    // A script says the same with `jump:`, and `s.route` tells the path.
    let script = format!(
        "let s = ssh(vm(\"{}\", \"{}\"), #{{key: \"{key}\", jump: \"{hop}\"}}); print(s.route); print(s.exec(\"hostname\").stdout.trim());",
        p.vm.resource_group, p.vm.name
    );
    let t = p.azssh(&["run", "-e", &script]).stdout_contains("jump\n");
    blocking(move || t.run()).await;

    // The jump host's key is verified too: an unknown jump host is refused.
    std::fs::write(
        p.known_hosts(),
        std::fs::read_to_string(p.known_hosts())
            .expect("read")
            .lines()
            .filter(|l| !l.starts_with("[127.0.0.1]"))
            .collect::<Vec<_>>()
            .join("\n")
            + "\n",
    )
    .expect("write");
    let t = p
        .hostname_through(Path::new(&key), &hop)
        .status(1)
        .stderr_contains("is not a known host");
    blocking(move || t.run()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bastions_that_cannot_tunnel_are_refused_with_the_setting_to_change() {
    let emu = emulator().await;
    for (tag, says, hint) in [
        (
            "private-basic-bastion",
            "the Basic SKU has no native client support",
            "--sku Standard --enable-tunneling true",
        ),
        (
            "private-no-tunneling",
            "native client support (`enableTunneling`) is off on this Premium bastion",
            "--enable-tunneling true",
        ),
        (
            "private-developer-bastion",
            "the Developer SKU reaches Linux VMs over SSH only, and this VM runs Windows",
            "--jump",
        ),
    ] {
        let v = emu.private_vm_tagged(tag);
        let t = Test::azssh(
            &emu,
            &[
                "connect",
                "-g",
                &v.resource_group,
                "-n",
                &v.name,
                "--",
                "hostname",
            ],
        )
        .env("SSH_AUTH_SOCK", "/nonexistent/agent.sock")
        .status(1)
        .stderr_contains(says)
        .stderr_contains(hint);
        blocking(move || t.run()).await;
    }
    // Named explicitly, the Premium bastion without tunneling is refused the same way (the az
    // CLI's own check lets it through).
    let b = emu.bastion_tagged("bastion-no-tunneling");
    let v = emu.private_vm_tagged("private-no-tunneling");
    let t = Test::azssh(
        &emu,
        &[
            "proxy",
            "-g",
            &v.resource_group,
            "-n",
            &v.name,
            "--bastion",
            &b.name,
        ],
    )
    .status(1)
    .stderr_contains("`enableTunneling`) is off");
    blocking(move || t.run()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_of_a_private_vm_goes_through_the_bastion_and_admits_only_its_subnet() {
    let emu = emulator().await;
    let v = emu.private_vm();
    let prefix = bastion_prefix(&emu);
    let home = tempfile::tempdir().expect("home");
    let key = keygen(home.path());
    // The emulator's whole environment, `AZSSH_SSH_PORT` included, as a new user has it: that
    // port stands for port 22 of directly dialled guests, and a bastion still asks for 22.
    let t = Test::new()
        .envs(emu.env())
        .env("SSH_AUTH_SOCK", "/nonexistent/agent.sock")
        .args(&[
            "setup",
            "-g",
            &v.resource_group,
            "-n",
            &v.name,
            "--key",
            &key.with_extension("pub").display().to_string(),
        ])
        .stderr_contains("works");
    let out = blocking(move || t.run()).await;
    let said = stderr_of(&out);
    assert!(
        said.contains("reached via bastion"),
        "the path is reported: {said}"
    );
    // The NSG admits the bastion's subnet on 22, and nothing from the Internet.
    let arm = client(&emu);
    let vm = get_vm(&arm, &v.resource_group, &v.name).await.expect("vm");
    let mut admitted = Vec::new();
    for nsg in &vm.nsg_ids {
        for r in azssh::azure::network::list_security_rules(&arm, nsg)
            .await
            .expect("rules")
        {
            if r.properties.access.eq_ignore_ascii_case("Allow") {
                admitted.extend(r.properties.source_address_prefix.clone());
                admitted.extend(r.properties.source_address_prefixes.clone());
            }
        }
    }
    assert_eq!(
        admitted,
        vec![prefix],
        "only the bastion subnet is admitted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_scripts_and_cp_reach_a_private_vm_through_the_bastion() {
    let emu = emulator().await;
    let keys = tempfile::tempdir().expect("keys");
    let key = keygen(keys.path());
    let prefix = bastion_prefix(&emu);
    let p = Private::prepare(emu, "private-bastion", &key, vec![prefix], 22).await;
    let key_arg = key.display().to_string();
    // A fleet script calls `ssh(vm)` as usual: the path is chosen per VM.
    let targets = p.home.path().join("targets.txt");
    std::fs::write(&targets, format!("{}\n", p.vm.id)).expect("targets");
    let script = format!(
        "let s = ssh(vm, #{{port: 22, key: \"{key_arg}\"}}); #{{route: s.route, host: s.exec(\"hostname\").stdout.trim()}}"
    );
    let script_path = p.home.path().join("who.rhai");
    std::fs::write(&script_path, script).expect("script");
    let computer = p.vm.computer_name.clone().expect("computer name");
    let t = p
        .azssh(&[
            "fleet",
            &script_path.display().to_string(),
            "--targets",
            &targets.display().to_string(),
            "-o",
            "json",
        ])
        .stdout_contains("\"route\": \"bastion\"")
        .stdout_contains(&computer);
    blocking(move || t.run()).await;

    // `azssh cp` both ways over the same path.
    let local = p.home.path().join("notes.txt");
    std::fs::write(&local, "through the bastion\r\n").expect("local");
    let admin = p.vm.admin_username.clone().expect("admin");
    let remote = format!(
        "{}/{}:C:/Users/{admin}/notes.txt",
        p.vm.resource_group, p.vm.name
    );
    let up = p.azssh(&[
        "cp",
        &local.display().to_string(),
        &remote,
        "-i",
        &key_arg,
        "--port",
        "22",
    ]);
    blocking(move || up.run()).await;
    let back = p.home.path().join("back.txt");
    let down = p.azssh(&[
        "cp",
        &remote,
        &back.display().to_string(),
        "-i",
        &key_arg,
        "--port",
        "22",
    ]);
    blocking(move || down.run()).await;
    assert_eq!(
        std::fs::read_to_string(&back).expect("back"),
        "through the bastion\r\n"
    );
}
