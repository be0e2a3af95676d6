//! Rhai bindings for key management: `authorized_keys`, `remove_key`, `expire_keys`,
//! `rotate_key`, and `copy_key`'s `expires`/`exclusive` forms. A thin layer over
//! `crate::workflow::keys`.

use rhai::{Array, Dynamic, Engine, EvalAltResult, FuncRegistration, Map};

use super::{RhaiResult, block, public_key, user_name};
use crate::azure::vm::Vm;
use crate::error::UserError;
use crate::script::api::options::Options;
use crate::script::context::Ctx;
use crate::script::error::{error_map, to_rhai};
use crate::script::value;
use crate::ssh::keys;
use crate::ssh::known_hosts::azssh_known_hosts_path;
use crate::windows::KeyTarget;
use crate::windows::keys::{KeyEdit, KeyFilesResult, KeyScope};
use crate::workflow::keys::{self as wk, RotateRequest};
use crate::workflow::{pin, setup};

fn wf<T>(r: Result<T, crate::workflow::error::WorkflowError>) -> RhaiResult<T> {
    r.map_err(|e| to_rhai(&e))
}

/// `user` → that user's file; none → `all_without_user` (every file) or the admin file.
fn scope(o: &Options, all_without_user: bool) -> RhaiResult<KeyScope> {
    Ok(match o.string("user")? {
        Some(u) => KeyScope::Target(KeyTarget::User(user_name(&u)?)),
        None if all_without_user => KeyScope::All,
        None => KeyScope::Target(KeyTarget::Administrators),
    })
}

/// The caller's keys: `identity` and the default identities.
fn protect(o: &Options) -> RhaiResult<Vec<String>> {
    let extra: Vec<std::path::PathBuf> = o
        .string("identity")?
        .map(|i| keys::expand_home(&i))
        .into_iter()
        .collect();
    Ok(wk::caller_fingerprints(&extra))
}

/// One row per key: the key and its file's encoding and ACL verdict.
fn key_rows(r: &KeyFilesResult) -> Array {
    let mut rows = Array::new();
    for f in &r.files {
        for k in &f.keys {
            rows.push(value::from_json(&serde_json::json!({
                "file": f.path, "owner": f.owner, "line": k.line, "type": k.key_type,
                "fingerprint": k.fingerprint, "comment": k.comment, "expires": k.expires,
                "options": k.options, "encoding": f.encoding, "acl": f.acl_verdict(),
            })));
        }
    }
    rows
}

fn edit_result(vm: &Vm, r: &KeyFilesResult, dry_run: bool) -> Dynamic {
    value::from_json(&serde_json::json!({
        "vm": vm.name, "resource_group": vm.resource_group, "dry_run": dry_run,
        "changed": !r.removed.is_empty() || !r.added.is_empty(),
        "removed": r.removed, "added": r.added, "written": r.written,
        "files": r.files.iter().map(|f| serde_json::json!({
            "file": f.path, "owner": f.owner, "encoding": f.encoding, "acl": f.acl_verdict(),
            "keys": f.keys.len(),
        })).collect::<Vec<_>>(),
    }))
}

fn run_edit(
    ctx: &Ctx,
    v: &Vm,
    what: &str,
    scope: KeyScope,
    edit: KeyEdit,
) -> RhaiResult<KeyFilesResult> {
    let arm = ctx.arm()?;
    let vm = v.clone();
    block(ctx, &format!("{what} on `{}`", v.name), async move {
        wk::key_files(&arm, &vm, &scope, &edit).await
    })
}

/// Registers `name(vm[, opts])`.
fn register_vm_opts(
    engine: &mut Engine,
    ctx: &Ctx,
    name: &'static str,
    doc: &'static str,
    f: fn(&Ctx, &Vm, Map) -> RhaiResult<Dynamic>,
) {
    let c = ctx.clone();
    FuncRegistration::new(name)
        .with_comments([doc])
        .with_params_info(["vm: Vm", "Dynamic"])
        .register_into_engine(engine, move |v: Vm| f(&c, &v, Map::new()));
    let c = ctx.clone();
    FuncRegistration::new(name)
        .with_comments([doc])
        .with_params_info(["vm: Vm", "options: map", "Dynamic"])
        .register_into_engine(engine, move |v: Vm, o: Map| f(&c, &v, o));
}

pub fn register(engine: &mut Engine, ctx: &Ctx) {
    register_vm_opts(
        engine,
        ctx,
        "authorized_keys",
        "\
/// Lists the SSH keys a Windows VM accepts, through RunCommand (works before SSH does): every
/// key of `C:\\ProgramData\\ssh\\administrators_authorized_keys` and of each profile's
/// `.ssh\\authorized_keys` (with `user`: only the file sshd reads for that user). One row per
/// key: `#{file, owner, line, type, fingerprint, comment, expires, options, encoding, acl}`;
/// `fingerprint` is what `ssh-keygen -lf` prints, `encoding` is `utf-8`, `utf-8-bom`,
/// `utf-16le` or `utf-16be` (sshd reads only `utf-8`), `acl` is `ok` or why sshd's StrictModes
/// ignores the file, `expires` the `azssh-expires=` date of the comment.
///
/// # Example
/// ```rhai
/// for k in authorized_keys(v) { print(`${k.file}:${k.line} ${k.fingerprint} ${k.comment}`); }
/// ```",
        authorized_keys,
    );
    for (with_opts, params) in [
        (false, &["vm: Vm", "fingerprint_or_key: string", "map"][..]),
        (
            true,
            &[
                "vm: Vm",
                "fingerprint_or_key: string",
                "options: map",
                "map",
            ][..],
        ),
    ] {
        let c = ctx.clone();
        let reg = FuncRegistration::new("remove_key")
            .with_comments([REMOVE_DOC])
            .with_params_info(params.to_vec());
        if with_opts {
            reg.register_into_engine(engine, move |v: Vm, k: &str, o: Map| {
                remove_key(&c, &v, k, o)
            });
        } else {
            reg.register_into_engine(engine, move |v: Vm, k: &str| {
                remove_key(&c, &v, k, Map::new())
            });
        }
    }
    register_vm_opts(engine, ctx, "expire_keys", EXPIRE_DOC, expire_keys);
    for with_opts in [false, true] {
        let c = ctx.clone();
        let reg = FuncRegistration::new("rotate_key").with_comments([ROTATE_DOC]);
        if with_opts {
            reg.with_params_info([
                "vm: Vm",
                "old: string",
                "new: string",
                "options: map",
                "map",
            ])
            .register_into_engine(engine, move |v: Vm, old: &str, new: &str, o: Map| {
                rotate_key(&c, &v, old, new, o)
            });
        } else {
            reg.with_params_info(["vm: Vm", "old: string", "new: string", "map"])
                .register_into_engine(engine, move |v: Vm, old: &str, new: &str| {
                    rotate_key(&c, &v, old, new, Map::new())
                });
        }
    }
    let c = ctx.clone();
    FuncRegistration::new("copy_key")
        .with_comments([COPY_MANY_DOC])
        .with_params_info(["vm: Vm", "keys: array", "options: map", "map"])
        .register_into_engine(engine, move |v: Vm, keys: Array, o: Map| {
            let texts: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
            copy_keys(&c, &v, &texts, o)
        });
}

const REMOVE_DOC: &str = "\
/// Removes exactly one key — given by fingerprint (`SHA256:...`) or as the public key's text or
/// file — from every authorized_keys file of the VM (with `user`: only that user's file), in one
/// RunCommand. A key that is not there is a no-op (`changed: false`). The files keep their
/// encoding, line endings and ACL. Refused (`windows.last_key`, nothing changed) when a file
/// would keep none of your own keys (`identity` and `~/.ssh/id_*`), or, when you have none
/// locally, would be left without any key; `force: true` removes it anyway. `dry_run: true`
/// reports what would go. Returns `#{changed, removed: [#{path, line, fingerprint, comment}],
/// files}`.
///
/// # Example
/// ```rhai
/// remove_key(v, \"SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s\");
/// remove_key(v, \"~/.ssh/old_ed25519.pub\", #{user: \"nina\"});
/// ```";

const EXPIRE_DOC: &str = "\
/// Removes the keys whose comment says `azssh-expires=YYYY-MM-DD` with a date before today (UTC)
/// from every authorized_keys file (with `user`: that user's file), in one RunCommand. Keys
/// without a date and keys still valid stay. `copy_key(v, key, #{expires: \"2027-03-01\"})` sets
/// the date. Options: `user`, `dry_run`. Returns `#{changed, removed, files}`.
///
/// # Example
/// ```rhai
/// let r = expire_keys(v);
/// for k in r.removed { info(`expired: ${k.fingerprint} ${k.comment}`); }
/// ```";

const ROTATE_DOC: &str = "\
/// Replaces a key safely: adds `new` (a public key file with its private key beside it, or a
/// private key file) to the file sshd reads for `user` (default: the VM's admin), logs in over
/// SSH with it (strict host-key checking against azssh's known_hosts: pin first), and only then
/// removes `old` (a fingerprint, key text or file). On any failure the old key stays and the
/// error carries `step` (`add`, `login` or `remove`) and `report`. Options: `user`, `identity`
/// (the new key's private half), `port`, `known_hosts`, `prefer_private_ip`. Returns `#{vm, old,
/// new, added, login, removed, state}`.
///
/// # Example
/// ```rhai
/// let r = rotate_key(v, \"~/.ssh/id_ed25519.pub\", \"~/.ssh/id_ed25519_2027.pub\");
/// info(r.state);
/// ```";

const COPY_MANY_DOC: &str = "\
/// Installs several keys at once (as `copy_key` does one), in one RunCommand. With
/// `exclusive: true` the file is left with exactly these keys: every other key of that file is
/// removed (refused, as by `remove_key`, if none of your own keys would remain, unless
/// `force: true`). Options: `user`, `expires` (`YYYY-MM-DD`, written into each key's comment as
/// `azssh-expires=DATE`), `exclusive`, `force`, `identity`. Returns `#{changed, added, removed,
/// files}`.
///
/// # Example
/// ```rhai
/// copy_key(v, [\"~/.ssh/id_ed25519.pub\", \"keys/ops.pub\"], #{exclusive: true});
/// ```";

fn authorized_keys(ctx: &Ctx, v: &Vm, options: Map) -> RhaiResult<Dynamic> {
    let o = Options::new("authorized_keys", options, &["user"])?;
    let scope = scope(&o, true)?;
    let r = run_edit(ctx, v, "reading the key files", scope, KeyEdit::default())?;
    Ok(key_rows(&r).into())
}

fn remove_key(ctx: &Ctx, v: &Vm, key: &str, options: Map) -> RhaiResult<Dynamic> {
    let o = Options::new(
        "remove_key",
        options,
        &["user", "force", "dry_run", "identity"],
    )?;
    let scope = scope(&o, true)?;
    let fingerprint = wf(
        wk::fingerprint_of(&keys::expand_home(key).to_string_lossy())
            .or_else(|_| wk::fingerprint_of(key)),
    )?;
    let dry_run = o.bool("dry_run")?.unwrap_or(false);
    let edit = KeyEdit {
        remove: vec![fingerprint],
        protect: protect(&o)?,
        force: o.bool("force")?.unwrap_or(false),
        dry_run,
        ..Default::default()
    };
    let r = run_edit(ctx, v, "removing a key", scope, edit)?;
    Ok(edit_result(v, &r, dry_run))
}

fn expire_keys(ctx: &Ctx, v: &Vm, options: Map) -> RhaiResult<Dynamic> {
    let o = Options::new("expire_keys", options, &["user", "dry_run"])?;
    let scope = scope(&o, true)?;
    let dry_run = o.bool("dry_run")?.unwrap_or(false);
    // An expiry was decided when the key was added: it is honoured even for the last key.
    let edit = KeyEdit {
        expired_before: Some(wk::today_utc()),
        force: true,
        dry_run,
        ..Default::default()
    };
    let r = run_edit(ctx, v, "removing expired keys", scope, edit)?;
    Ok(edit_result(v, &r, dry_run))
}

/// `copy_key(vm, key, #{expires, exclusive, ...})`: called by `copy_key` when either is set.
pub(crate) fn copy_key_with(ctx: &Ctx, v: &Vm, key: &str, options: Map) -> RhaiResult<Dynamic> {
    copy_keys(ctx, v, &[key.to_string()], options)
}

fn copy_keys(ctx: &Ctx, v: &Vm, texts: &[String], options: Map) -> RhaiResult<Dynamic> {
    let o = Options::new(
        "copy_key",
        options,
        &["user", "expires", "exclusive", "force", "identity"],
    )?;
    let scope = scope(&o, false)?;
    let expires = match o.string("expires")? {
        Some(d) => Some(wf(wk::expiry_date(&d))?),
        None => None,
    };
    let mut lines = Vec::new();
    let mut fingerprints = Vec::new();
    for t in texts {
        let k = public_key(t)?;
        fingerprints.push(k.fingerprint());
        lines.push(wk::key_line(&k, expires.as_deref()));
    }
    if lines.is_empty() {
        return Err(to_rhai(&crate::script::error::ScriptError::bad_argument(
            "`copy_key` got an empty list of keys",
            Some("pass at least one key; to remove keys use `remove_key`"),
        )));
    }
    let edit = KeyEdit {
        add: lines,
        exclusive: o.bool("exclusive")?.unwrap_or(false),
        protect: protect(&o)?,
        force: o.bool("force")?.unwrap_or(false),
        ..Default::default()
    };
    let r = run_edit(ctx, v, "installing keys", scope, edit)?;
    let mut map = edit_result(v, &r, false)
        .try_cast::<Map>()
        .unwrap_or_default();
    let path = r.files.first().map(|f| f.path.clone()).unwrap_or_default();
    map.insert("path".into(), path.into());
    map.insert(
        "fingerprint".into(),
        fingerprints.first().cloned().unwrap_or_default().into(),
    );
    map.insert(
        "fingerprints".into(),
        fingerprints
            .into_iter()
            .map(Dynamic::from)
            .collect::<Array>()
            .into(),
    );
    map.insert(
        "expires".into(),
        expires.map(Dynamic::from).unwrap_or(Dynamic::UNIT),
    );
    Ok(map.into())
}

fn rotate_key(ctx: &Ctx, v: &Vm, old: &str, new: &str, options: Map) -> RhaiResult<Dynamic> {
    let o = Options::new(
        "rotate_key",
        options,
        &[
            "user",
            "identity",
            "port",
            "known_hosts",
            "prefer_private_ip",
        ],
    )?;
    let old_fingerprint = wf(
        wk::fingerprint_of(&keys::expand_home(old).to_string_lossy())
            .or_else(|_| wk::fingerprint_of(old)),
    )?;
    let new_path = keys::expand_home(new);
    let new_key = public_key(&new_path.to_string_lossy())?;
    if new_key.fingerprint() == old_fingerprint {
        return Err(to_rhai(&crate::script::error::ScriptError::bad_argument(
            "`rotate_key`: the old and the new key are the same key",
            Some("generate a new key first: `generate_key(\"~/.ssh/id_ed25519_new\")`"),
        )));
    }
    let identity = match o.string("identity")? {
        Some(i) => keys::expand_home(&i),
        None if !new_path.to_string_lossy().ends_with(".pub") && new_path.is_file() => {
            new_path.clone()
        }
        None => setup::private_key_beside(&new_path).ok_or_else(|| {
            to_rhai(&crate::workflow::error::WorkflowError::NoPrivateKey {
                public: new_path.display().to_string(),
            })
        })?,
    };
    let user = match o.string("user")?.or_else(|| v.admin_username.clone()) {
        Some(u) => user_name(&u)?,
        None => {
            return Err(to_rhai(&crate::script::error::ScriptError::bad_argument(
                "`rotate_key` needs `user`: the VM does not name its admin",
                Some("pass `user: \"azureuser\"` (`--local-user`)"),
            )));
        }
    };
    let host = if o.bool("prefer_private_ip")?.unwrap_or(false) {
        v.private_ip.clone()
    } else {
        v.public_ip.clone()
    };
    let Some(host) = host.filter(|h| !h.is_empty()) else {
        return Err(to_rhai(
            &crate::workflow::error::WorkflowError::NoPublicIp {
                vm: v.name.clone(),
                private_ip: v.private_ip.clone(),
            },
        ));
    };
    let port = match o.int_in("port", 1..=65535)? {
        Some(p) => p as u16,
        None => pin::ssh_port(22).map_err(|e| to_rhai(&e))?,
    };
    let req = RotateRequest {
        old_fingerprint,
        new: new_key,
        identity,
        target: KeyTarget::User(user.clone()),
        user,
        host,
        port,
        known_hosts: o
            .string("known_hosts")?
            .map(|p| keys::expand_home(&p))
            .unwrap_or_else(azssh_known_hosts_path),
    };
    let arm = ctx.arm()?;
    let vm = v.clone();
    let outcome = ctx
        .bridge
        .block_on(&format!("rotating a key on `{}`", v.name), async move {
            Ok::<_, crate::script::error::ScriptError>(wk::rotate_key(&arm, &vm, &req).await)
        })?;
    match outcome {
        Ok(report) => Ok(value::to_dynamic(&report)),
        Err(failed) => {
            let (report, err) = *failed;
            let step = report.stopped_at.unwrap_or("?");
            let mut map = error_map(
                err.kind(),
                &format!("rotate_key stopped at `{step}`: {err} ({})", report.state),
                err.hint(),
            )
            .try_cast::<Map>()
            .unwrap_or_default();
            map.insert("step".into(), step.into());
            map.insert("report".into(), value::to_dynamic(&report));
            Err(Box::new(EvalAltResult::ErrorRuntime(
                map.into(),
                rhai::Position::NONE,
            )))
        }
    }
}
