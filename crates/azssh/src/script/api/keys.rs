//! Rhai bindings for SSH key files: `generate_key`, `key_info`.

use std::sync::Arc;

use rhai::{Dynamic, Engine, EvalAltResult, FuncRegistration, Map};

use crate::script::api::options::Options;
use crate::script::context::ScriptContext;
use crate::script::error::to_rhai;
use crate::script::value;
use crate::ssh::keys::{self, KeyKind};

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

const GENERATE_DOC: &str = "\
/// Generates a key pair: the OpenSSH private key at `path` (mode 0600, never over an existing
/// file) and the public key at `path.pub`. ed25519 by default; `#{bits: 3072}` makes RSA.
/// Returns `#{private_key, public_key, fingerprint, public_line}` (the paths also as `private`
/// and `public`, reserved words in Rhai: read those as `k[\"public\"]`).
///
/// # Example
/// ```rhai
/// let k = generate_key(\"~/.ssh/azssh_ed25519\");
/// info(`${k.public_key}: ${k.fingerprint}`);
/// let rsa = generate_key(\"/tmp/rsa_key\", #{bits: 3072, comment: \"ops@contoso\"});
/// ```";

pub fn register(engine: &mut Engine, _ctx: &Arc<ScriptContext>) {
    FuncRegistration::new("generate_key")
        .with_comments([GENERATE_DOC])
        .with_params_info(["path: string", "map"])
        .register_into_engine(engine, |path: &str| generate(path, Map::new()));
    FuncRegistration::new("generate_key")
        .with_comments([GENERATE_DOC])
        .with_params_info(["path: string", "options: map", "map"])
        .register_into_engine(engine, generate);

    FuncRegistration::new("key_info")
        .with_comments(["\
/// Describes a public key given as text, or a key file (public, or private: its public half is
/// read without the passphrase). Returns `#{algorithm, bits, fingerprint, comment, public_line,
/// path, private, encrypted}`. DSA and RSA under 2048 bits are refused with the reason.
///
/// # Example
/// ```rhai
/// key_info(\"~/.ssh/id_ed25519.pub\").fingerprint  // \"SHA256:...\"
/// ```"])
        .with_params_info(["path_or_text: string", "map"])
        .register_into_engine(engine, |what: &str| -> RhaiResult<Dynamic> {
            let info = keys::key_info(what).map_err(|e| to_rhai(&e))?;
            Ok(value::to_dynamic(&info))
        });
}

fn generate(path: &str, options: Map) -> RhaiResult<Dynamic> {
    let opts = Options::new("generate_key", options, &["bits", "comment"])?;
    let bits = opts.int_in("bits", 2048..=16384)?.map(|b| b as u32);
    let comment = opts.string("comment")?.unwrap_or_else(|| "azssh".into());
    let path = keys::expand_home(path);
    let generated =
        keys::generate_key(&path, KeyKind::from_bits(bits), &comment).map_err(|e| to_rhai(&e))?;
    let mut map = value::to_dynamic(&generated)
        .try_cast::<Map>()
        .unwrap_or_default();
    // `public` and `private` are reserved words in Rhai (`k.public` does not parse): the same
    // paths under names a script can write, the old keys kept for `k["public"]`.
    map.insert(
        "private_key".into(),
        generated.private.display().to_string().into(),
    );
    map.insert(
        "public_key".into(),
        generated.public.display().to_string().into(),
    );
    Ok(map.into())
}
