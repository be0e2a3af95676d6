//! `parallel(items, fn_ptr[, #{concurrency}])`: maps a closure over an array on several threads
//! at once and returns the results in the items' order.
//!
//! Each worker is a scoped OS thread calling the closure through the caller's
//! `NativeCallContext` (Rhai's `sync` feature makes it shareable): the natives a closure calls
//! block their own thread on the runtime (`script::bridge`), so threads, not tasks, are what let
//! several RunCommands or SSH sessions wait at once. Cancellation (Ctrl-C, a deadline) reaches
//! every worker through the engine's `on_progress` hook and the bridge, as in the main script.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use rhai::{
    Array, Dynamic, Engine, EvalAltResult, FnPtr, FuncRegistration, Map, NativeCallContext,
};

use crate::script::api::options::Options;
use crate::script::context::Ctx;

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

/// Workers when the script does not say: enough to overlap Azure's slow calls, few enough not
/// to drain the subscription's ARM budget in one burst.
const DEFAULT_CONCURRENCY: i64 = 8;
const MAX_CONCURRENCY: i64 = 256;
/// Rhai recurses on the native stack; give workers the room the main script thread has.
const WORKER_STACK: usize = 8 * 1024 * 1024;

pub fn register(engine: &mut Engine, _ctx: &Ctx) {
    let doc = "\
/// Calls `f` on every item of `items`, up to `concurrency` at once (default 8), and returns
/// the results in the items' order. An error in one call is raised once every call has ended
/// (the first by position); catch inside `f` to keep going and return the error as a value.
/// `f` sees the variables it captured; changes it makes to them stay in its own copy.
///
/// # Example
/// ```rhai
/// let names = parallel(vms(\"rg-web\"), |v| {
///     let r = ();
///     try { r = run_powershell(v, \"hostname\").stdout; } catch (e) { r = e.kind; }
///     r
/// }, #{concurrency: 16});
/// ```";
    FuncRegistration::new("parallel")
        .with_comments([doc])
        .with_params_info(["items: array", "f: FnPtr", "array"])
        .register_into_engine(engine, |ctx: NativeCallContext, items: Array, f: FnPtr| {
            parallel(&ctx, items, &f, DEFAULT_CONCURRENCY as usize)
        });
    FuncRegistration::new("parallel")
        .with_comments([doc])
        .with_params_info(["items: array", "f: FnPtr", "options: map", "array"])
        .register_into_engine(
            engine,
            |ctx: NativeCallContext, items: Array, f: FnPtr, options: Map| {
                let o = Options::new("parallel", options, &["concurrency"])?;
                let n = o
                    .int_in("concurrency", 1..=MAX_CONCURRENCY)?
                    .unwrap_or(DEFAULT_CONCURRENCY);
                parallel(&ctx, items, &f, usize::try_from(n).unwrap_or(1))
            },
        );
}

/// The map itself: workers take the next index from a counter until the items run out.
fn parallel(
    ctx: &NativeCallContext,
    items: Array,
    f: &FnPtr,
    concurrency: usize,
) -> RhaiResult<Array> {
    let n = items.len();
    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<RhaiResult<Dynamic>>>> = (0..n).map(|_| Mutex::new(None)).collect();
    let worker = || {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(i) else { break };
            let result = f.call_within_context::<Dynamic>(ctx, (item.clone(),));
            *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
        }
    };
    let spawn_failed = std::thread::scope(|scope| {
        let mut failed = None;
        for _ in 0..concurrency.min(n) {
            if let Err(e) = std::thread::Builder::new()
                .name("azssh-parallel".into())
                .stack_size(WORKER_STACK)
                .spawn_scoped(scope, worker)
            {
                failed = Some(e);
                break;
            }
        }
        failed
    });
    // A worker that could not start leaves its items to the others; only no worker at all fails.
    if let Some(e) = spawn_failed
        && next.load(Ordering::Relaxed) == 0
    {
        return Err(format!("parallel: cannot start a worker thread: {e}").into());
    }
    let mut out = Array::with_capacity(n);
    for slot in slots {
        match slot.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(Ok(v)) => out.push(v),
            Some(Err(e)) => return Err(e),
            None => return Err("parallel: an item was not processed".into()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicI64;
    use std::sync::{Arc, Condvar};
    use std::time::Duration;

    use super::*;
    use crate::script::bridge::{Bridge, Cancel};
    use crate::script::context::ScriptContext;

    fn engine_with_probe(rt: &tokio::runtime::Runtime, probe: Arc<Probe>) -> Engine {
        let bridge = Bridge::new(rt.handle().clone(), Cancel::new(None));
        let ctx = Arc::new(ScriptContext::new(
            bridge,
            Default::default(),
            Default::default(),
        ));
        let mut engine = crate::script::engine::build(&ctx);
        engine.register_fn("probe", move |x: i64| probe.visit(x));
        engine
    }

    /// Counts callers inside at once; each waits (bounded) until `want` are inside, so a pool
    /// of `want` workers is observed at full width without relying on timing.
    #[derive(Default)]
    struct Probe {
        inside: Mutex<i64>,
        arrived: Condvar,
        max: AtomicI64,
        want: i64,
    }

    impl Probe {
        fn visit(&self, x: i64) -> i64 {
            let mut inside = self.inside.lock().unwrap();
            *inside += 1;
            self.max.fetch_max(*inside, Ordering::SeqCst);
            let (mut inside, _) = self
                .arrived
                .wait_timeout_while(inside, Duration::from_secs(2), |n| *n < self.want)
                .unwrap();
            self.arrived.notify_all();
            *inside -= 1;
            x * 10
        }
    }

    #[test]
    fn parallel_keeps_order_and_runs_concurrency_at_once() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let probe = Arc::new(Probe {
            want: 4,
            ..Probe::default()
        });
        let engine = engine_with_probe(&rt, probe.clone());
        let out: Array = engine
            .eval("parallel([1, 2, 3, 4, 5, 6, 7, 8], |x| probe(x), #{concurrency: 4})")
            .unwrap();
        let got: Vec<i64> = out.into_iter().map(|v| v.as_int().unwrap()).collect();
        assert_eq!(got, vec![10, 20, 30, 40, 50, 60, 70, 80]);
        assert_eq!(probe.max.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn parallel_raises_the_first_error_by_position() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let engine = engine_with_probe(&rt, Arc::new(Probe::default()));
        let err = engine
            .eval::<Array>(r#"parallel([1, 2, 3], |x| if x >= 2 { throw `bad ${x}` } else { x })"#)
            .unwrap_err();
        assert!(err.to_string().contains("bad 2"), "{err}");
        let caught: Array = engine
            .eval(
                r#"let base = 100;
                parallel([1, 2], |x| {
                    let r = ();
                    try { if x == 2 { throw "no" } r = base + x; } catch (e) { r = e; }
                    r
                })"#,
            )
            .unwrap();
        assert_eq!(caught[0].as_int().unwrap(), 101);
        assert_eq!(caught[1].clone().into_string().unwrap(), "no");
    }

    #[test]
    fn parallel_rejects_bad_concurrency() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let engine = engine_with_probe(&rt, Arc::new(Probe::default()));
        let err = engine
            .eval::<Array>("parallel([1], |x| x, #{concurrency: 0})")
            .unwrap_err();
        assert!(err.to_string().contains("concurrency"), "{err}");
    }
}
