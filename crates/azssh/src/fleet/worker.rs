//! The fleet's script workers: at most `--concurrency` OS threads, each keeping one Rhai engine
//! (and one `ScriptContext`) for the whole run and evaluating one VM at a time.
//!
//! Building an engine registers the whole API (every native, its closure and its metadata), and
//! a fresh `run::isolated` thread maps and touches a new `SCRIPT_STACK`: done per VM, that was
//! most of a fleet run's own CPU (issue 17's profile: allocation and page zeroing). A worker
//! builds its engine on its first VM and keeps its stack; what belongs to one VM is swapped in
//! for that VM's evaluation and nothing else is kept:
//! - its `Cancel` (deadline, `--max-fail`/Ctrl-C abort): the engine's slot `follow`s it, and
//!   `ScriptContext::release` detaches it afterwards;
//! - its `print` prefix (the VM's name), set before each evaluation;
//! - a fresh `Scope` (`vm`, `ARGS`), dropped on the worker's stack before the next VM;
//! - what the script left running (tunnels), ended by `ScriptContext::release`;
//! - its result or error, sent back to that VM's task alone.
//!
//! A panic inside Rhai or a native fails that VM only (as `run::isolated` does) and the worker
//! drops its engine: the next VM gets a new one rather than one left mid-update.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};

use rhai::{Dynamic, Engine, Scope};
use serde_json::Value;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

use super::journal::{self, ErrorInfo};
use super::scheduler::FleetJob;
use crate::azure::vm;
use crate::output;
use crate::script::bridge::{Bridge, Cancel};
use crate::script::context::ScriptContext;
use crate::script::engine;
use crate::script::error::{self, Diagnostic, SourceLookup};
use crate::script::run::{SCRIPT_STACK, Script, crashed, crashed_by_panic};
use azssh_core::error::kind;

/// The run's workers; dropping this ends them once their current VM is done.
pub struct Workers {
    jobs: Option<mpsc::Sender<Job>>,
    script: String,
}

/// One VM's evaluation, handed to whichever worker is free.
struct Job {
    id: String,
    cancel: Cancel,
    reply: oneshot::Sender<Result<Value, ErrorInfo>>,
}

impl Workers {
    /// Starts up to `count` threads (engines are built on each thread's first VM). A thread
    /// that cannot start leaves its VMs to the others; with none at all, every VM fails.
    pub fn start(job: Arc<FleetJob>, count: usize, handle: &Handle) -> Workers {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut started = 0;
        for _ in 0..count {
            let (job, rx, handle) = (job.clone(), rx.clone(), handle.clone());
            let spawned = std::thread::Builder::new()
                .name("azssh-fleet".into())
                .stack_size(SCRIPT_STACK)
                .spawn(move || work(&job, &rx, &handle));
            match spawned {
                Ok(_) => started += 1,
                Err(e) => {
                    output::log(
                        output::Level::Warn,
                        &format!("fleet: started {started} of {count} script threads: {e}"),
                    );
                    break;
                }
            }
        }
        Workers {
            jobs: (started > 0).then_some(tx),
            script: job.script.name.clone(),
        }
    }

    /// Evaluates the script for the VM `id` on a free worker, `cancel` stopping it.
    pub async fn evaluate(&self, id: &str, cancel: &Cancel) -> Result<Value, ErrorInfo> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            id: id.to_string(),
            cancel: cancel.clone(),
            reply,
        };
        let no_thread = || {
            Err(info(*crashed(
                &self.script,
                "no script thread could start (see the warning above)",
            )))
        };
        match &self.jobs {
            Some(tx) if tx.send(job).is_ok() => {}
            _ => return no_thread(),
        }
        answer.await.unwrap_or_else(|_| {
            Err(ErrorInfo {
                kind: "internal".into(),
                message: "the script thread ended without an answer".into(),
                hint: Some("this is a bug in azssh; please report it".into()),
            })
        })
    }
}

/// A worker thread: takes VMs until the run drops `Workers`.
fn work(job: &FleetJob, jobs: &Mutex<mpsc::Receiver<Job>>, handle: &Handle) {
    let mut worker: Option<Worker> = None;
    loop {
        // Idle workers queue on the lock; the one holding it waits for the next VM.
        let next = jobs.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(next) = next else { return };
        let w = worker.get_or_insert_with(|| Worker::new(job, handle));
        let result = match catch_unwind(AssertUnwindSafe(|| w.evaluate(job, &next))) {
            Ok(r) => r,
            Err(panic) => {
                worker = None;
                Err(info(*crashed_by_panic(&job.script.name, panic.as_ref())))
            }
        };
        // A VM whose task is gone (the run ended) needs no answer.
        let _ = next.reply.send(result);
    }
}

/// One worker's engine and the context its natives capture.
struct Worker {
    ctx: Arc<ScriptContext>,
    engine: Engine,
}

/// Releases the context when an evaluation ends, however it ends (a panic unwinds through it).
struct Released<'a>(&'a ScriptContext);

impl Drop for Released<'_> {
    fn drop(&mut self) {
        self.0.release();
    }
}

impl Worker {
    fn new(job: &FleetJob, handle: &Handle) -> Worker {
        let ctx = Arc::new(ScriptContext::with_arm(
            Bridge::new(handle.clone(), Cancel::new(None)),
            job.settings.clone(),
            job.limits.clone(),
            job.arm.clone(),
        ));
        let engine = engine::build(&ctx);
        Worker { ctx, engine }
    }

    fn evaluate(&mut self, job: &FleetJob, next: &Job) -> Result<Value, ErrorInfo> {
        self.ctx.bridge.cancel().follow(&next.cancel);
        let _released = Released(&self.ctx);
        // stdout carries the fleet's structured results; a VM's `print` goes to stderr, prefixed
        // with the VM's name so interleaved lines stay attributable (as `pssh -i` does).
        let vm_name = crate::fleet::targets::Target::from_id(&next.id)
            .map(|t| t.name)
            .unwrap_or_default();
        self.engine
            .on_print(move |text| output::status(&format!("{vm_name}: {text}\n")));
        evaluate(job, &self.engine, &self.ctx, &next.id)
    }
}

fn info(d: Diagnostic) -> ErrorInfo {
    ErrorInfo {
        kind: d.kind,
        message: d.message,
        hint: d.hint,
    }
}

struct Sources<'a>(&'a Script);

impl SourceLookup for Sources<'_> {
    fn source_text(&self, name: &str) -> Option<String> {
        if name == self.0.name {
            Some(self.0.text.clone())
        } else {
            crate::script::resolver::source_text(name)
        }
    }
}

/// Reads the VM, then evaluates the run's one compiled AST with `vm` and `ARGS`.
fn evaluate(
    job: &FleetJob,
    engine: &Engine,
    ctx: &ScriptContext,
    id: &str,
) -> Result<Value, ErrorInfo> {
    let diagnose = |e: &rhai::EvalAltResult| {
        let d = error::from_eval(
            e,
            &job.script.name,
            &Sources(&job.script),
            engine::catalog(engine),
        );
        let message = match d.line {
            Some(line) if !d.file.is_empty() => format!("{} ({}:{line})", d.message, d.file),
            _ => d.message,
        };
        ErrorInfo {
            kind: d.kind,
            message,
            hint: d.hint,
        }
    };
    let known = {
        let (inventory, arm, key) = (
            job.inventory.clone(),
            job.arm.clone(),
            id.to_ascii_lowercase(),
        );
        ctx.bridge
            .block_on("reading the inventory", async move {
                Ok::<_, crate::azure::error::AzureError>(inventory.vm(&arm, &key).await)
            })
            .map_err(|e| diagnose(&e))?
    };
    let found = match known {
        Some(vm) => vm,
        None => {
            let arm = job.arm.clone();
            let owned = id.to_string();
            ctx.bridge
                .block_on(
                    "reading VM",
                    async move { vm::get_vm_by_id(&arm, &owned).await },
                )
                .map_err(|e| diagnose(&e))?
        }
    };
    let mut scope = Scope::new();
    // Bundled runbooks find their VM through `target::vm_from(ARGS)`, a module function that
    // cannot see the caller's `vm`: hand it the VM in `ARGS.vm` too (unless `--arg vm=` says otherwise).
    let mut args = job.args.clone();
    args.entry("vm".into())
        .or_insert_with(|| Dynamic::from(found.clone()));
    scope.push_constant("ARGS", args);
    scope.push("vm", found);
    let value = engine
        .eval_ast_with_scope::<Dynamic>(&mut scope, &job.ast)
        .map_err(|e| diagnose(&e))?;
    let mut json = crate::script::value::to_json(&value).map_err(|e| ErrorInfo {
        kind: kind::script::OUTPUT.into(),
        message: format!("cannot record the script's result: {e}"),
        hint: Some("end the script with a map, array, string or number".into()),
    })?;
    journal::redact(&mut json);
    Ok(json)
}
