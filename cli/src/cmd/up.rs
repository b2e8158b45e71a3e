//! `outflow up`: the agent and an embedded controller in one process on this machine.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use outflow_controller::app;
use tracing::{error, info};

use outflow_agent::http::Token;
use outflow_agent::inventory::PodSource;
use outflow_agent::{capture_tasks, Readiness};

use super::agent::AgentArgs;
use super::analyze::load_profile;
use super::controller::ControllerArgs;

/// Flags of `outflow up`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    agent: AgentArgs,
    #[command(flatten)]
    controller: ControllerArgs,
}

/// Runs until SIGINT or SIGTERM.
pub fn run(mut args: Args) -> anyhow::Result<ExitCode> {
    let profile = load_profile(args.agent.profile.as_ref())?;
    let mut cfg = args.agent.config()?;
    let pods = args.agent.pod_source(&cfg)?;
    let inventory = pods.inventory()?;
    args.controller.kubeconfig = args.agent.kubeconfig.clone();
    args.controller.kube = matches!(pods, PodSource::Kube(_));
    let token = args.controller.token()?;
    let stop = Arc::new(AtomicBool::new(false));
    if args.controller.kube {
        // Asked of its own API, the way a DaemonSet's agent asks the controller.
        let token = token.clone().map_or(Token::None, Token::Fixed);
        cfg.cluster_profile = Some(super::agent::cluster_profile(
            args.controller.own_url(),
            token,
            &stop,
        )?);
    }
    let state = args.controller.state_with(token.clone())?;
    let tasks = args.agent.captures(
        &cfg,
        pods,
        args.controller.own_url(),
        token.map_or(Token::None, Token::Fixed),
    );
    let ready = Arc::new(Readiness::default());
    // Ready for a person only once the agent is and the controller holds its first report, so a
    // capture of a pod that has not spoken yet finds its node.
    let stored_first = Arc::new(AtomicBool::new(false));
    let state = {
        let (ready, stored) = (ready.clone(), stored_first.clone());
        state.with_ready_check(Arc::new(move || {
            ready.check()?;
            match stored.load(Ordering::Acquire) {
                true => Ok(()),
                false => Err("the controller has not stored the agent's first report yet".into()),
            }
        }))
    };
    super::controller::runtime()?.block_on(async move {
        // Bound before the agent enters the node namespace: the API stays on this host.
        let listener = args.controller.bind().await?;
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let agent_stop = stop.clone();
        capture_tasks::spawn(tasks, stop.clone())?;
        std::thread::Builder::new()
            .name("datapath".into())
            .spawn(move || {
                let result = outflow_agent::run(cfg, &profile, inventory, ready, agent_stop, |r| {
                    let _ = tx.blocking_send(r);
                });
                let _ = done_tx.send(result);
            })?;
        let ingest_state = state.clone();
        let ingest = tokio::spawn(async move {
            while let Some(report) = rx.recv().await {
                match ingest_state.ingest(report).await {
                    Ok(()) if !stored_first.swap(true, Ordering::AcqRel) => {
                        info!("ready: the node's pods are known and its traffic is recorded")
                    }
                    Ok(()) => {}
                    Err(e) => error!(error = %e, "storing a report failed"),
                }
            }
        });
        let mut agent_done = done_rx;
        let shutdown_stop = stop.clone();
        state.spawn_retention(super::controller::RETENTION_PERIOD);
        let server = outflow_controller::serve(
            listener,
            app(state),
            outflow_controller::ConnectionLimits::default(),
            async move {
                super::shutdown_signal().await;
                shutdown_stop.store(true, Ordering::Relaxed);
            },
        );
        let result = tokio::select! {
            r = server => { r.context("serving the API")?; agent_done.await.unwrap_or(Ok(())) }
            r = &mut agent_done => r.unwrap_or(Ok(())),
        };
        stop.store(true, Ordering::Relaxed);
        let _ = ingest.await;
        result.map(|()| ExitCode::SUCCESS)
    })
}
