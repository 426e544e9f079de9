use std::time::Duration;

use rusm_otp::ExitReason;

use crate::components;
use crate::{node, pid_bytes, pinger_init, probe};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spinning_guest_can_be_killed() {
    let node = node(&[components::SPINNER]);
    let rt = node.runtime().clone();
    let (me, mut probe) = probe(&rt);
    let spinner = node.spawn("spinner", pid_bytes(me)).unwrap();
    assert_eq!(probe.data().await, (1, b"spinning".to_vec()));
    let end = rt.watch(spinner);
    rt.kill(spinner);
    assert_eq!(end.await, ExitReason::Killed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_blocked_in_receive_can_be_killed_and_exited() {
    let node = node(&[components::PING_PONG]);
    let rt = node.runtime().clone();
    let ponger = node.spawn("ping-pong", Vec::new()).unwrap();
    let end = rt.watch(ponger);
    rt.kill(ponger);
    assert_eq!(end.await, ExitReason::Killed);
    let ponger = node.spawn("ping-pong", Vec::new()).unwrap();
    let end = rt.watch(ponger);
    rt.exit(ponger, ExitReason::custom("go away"));
    assert_eq!(end.await, ExitReason::custom("go away"));
}

/// Spinners on every core (and more) cannot starve other actors: epoch preemption
/// makes each spinner yield every tick, so a ping-pong between two other components
/// still completes, and then every spinner can be killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bystanders_make_progress_while_spinners_occupy_every_core() {
    let node = node(&[components::SPINNER, components::PING_PONG]);
    let rt = node.runtime().clone();
    let (me, mut probe) = probe(&rt);
    let mut spinners = Vec::new();
    for _ in 0..4 {
        spinners.push(node.spawn("spinner", pid_bytes(me)).unwrap());
    }
    for _ in 0..4 {
        assert_eq!(probe.data().await, (1, b"spinning".to_vec()));
    }
    let ponger = node.spawn("ping-pong", Vec::new()).unwrap();
    let init = pinger_init(ponger, 200, me);
    node.spawn("ping-pong", init).unwrap();
    assert_eq!(probe.data().await, (3, 200u64.to_le_bytes().to_vec()));
    for spinner in spinners {
        let end = rt.watch(spinner);
        rt.kill(spinner);
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(10), end)
                .await
                .unwrap(),
            ExitReason::Killed
        );
    }
}
