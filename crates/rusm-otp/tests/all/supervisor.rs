use std::time::{Duration, Instant};

use rusm_otp::supervisor::{
    ChildSpec, Restart, Shutdown, Strategy, SupervisorSpec, init_done, supervise,
};
use rusm_otp::{ExitReason, Message, Payload, Pid, Runtime};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Start(&'static str, Pid),
    Stop(&'static str),
}

/// What a test child is told to do.
enum Order {
    Crash,
    Finish,
}

/// A child that reports its start, traps exits to report its stop, and crashes or
/// finishes on request.
fn child(id: &'static str, events: UnboundedSender<Event>) -> ChildSpec {
    ChildSpec::worker(id, move |ctx| {
        let events = events.clone();
        async move {
            ctx.trap_exit(true);
            events.send(Event::Start(id, ctx.pid())).unwrap();
            init_done(&ctx);
            loop {
                match ctx.recv().await {
                    Message::Exit(sig) => {
                        events.send(Event::Stop(id)).unwrap();
                        return sig.reason;
                    }
                    Message::Data(d) => match d.payload.downcast::<Order>() {
                        Ok(Order::Crash) => return ExitReason::crashed(format!("{id} crashed")),
                        Ok(Order::Finish) => return ExitReason::Normal,
                        Err(_) => {}
                    },
                    _ => {}
                }
            }
        }
    })
    .shutdown(Shutdown::Timeout(Duration::from_secs(5)))
    .await_init(Duration::from_secs(5))
}

async fn next(events: &mut UnboundedReceiver<Event>) -> Event {
    tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("an event within 10 s")
        .expect("events channel open")
}

/// Collect `n` start events and return the pids by id order of arrival.
async fn starts(events: &mut UnboundedReceiver<Event>, n: usize) -> Vec<(&'static str, Pid)> {
    let mut out = Vec::new();
    for _ in 0..n {
        match next(events).await {
            Event::Start(id, pid) => out.push((id, pid)),
            other => panic!("expected a start, got {other:?}"),
        }
    }
    out
}

fn three(strategy: Strategy, events: &UnboundedSender<Event>) -> SupervisorSpec {
    SupervisorSpec::new(strategy)
        .intensity(10, Duration::from_secs(60))
        .child(child("a", events.clone()))
        .child(child("b", events.clone()))
        .child(child("c", events.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_start_in_order_and_stop_in_reverse() {
    let rt = Runtime::new();
    let (tx, mut rx) = unbounded_channel();
    let spec = three(Strategy::OneForOne, &tx);
    let sup = rt.spawn(move |ctx| supervise(ctx, spec));
    let started: Vec<_> = starts(&mut rx, 3)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(started, ["a", "b", "c"]);
    let end = rt.watch(sup);
    rt.exit(sup, ExitReason::Shutdown);
    assert_eq!(end.await, ExitReason::Shutdown);
    let stops = [
        next(&mut rx).await,
        next(&mut rx).await,
        next(&mut rx).await,
    ];
    assert_eq!(
        stops,
        [Event::Stop("c"), Event::Stop("b"), Event::Stop("a")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_for_one_restarts_only_the_failed_child() {
    let rt = Runtime::new();
    let (tx, mut rx) = unbounded_channel();
    let spec = three(Strategy::OneForOne, &tx);
    rt.spawn(move |ctx| supervise(ctx, spec));
    let pids = starts(&mut rx, 3).await;
    rt.send(pids[1].1, Payload::value(Order::Crash));
    let (id, new_b) = starts(&mut rx, 1).await[0];
    assert_eq!(id, "b");
    assert_ne!(new_b, pids[1].1);
    assert!(rt.is_alive(pids[0].1) && rt.is_alive(pids[2].1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_for_all_restarts_every_child() {
    let rt = Runtime::new();
    let (tx, mut rx) = unbounded_channel();
    let spec = three(Strategy::OneForAll, &tx);
    rt.spawn(move |ctx| supervise(ctx, spec));
    let pids = starts(&mut rx, 3).await;
    rt.send(pids[1].1, Payload::value(Order::Crash));
    // The survivors stop in reverse order, then all start again in order.
    assert_eq!(next(&mut rx).await, Event::Stop("c"));
    assert_eq!(next(&mut rx).await, Event::Stop("a"));
    let again: Vec<_> = starts(&mut rx, 3)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(again, ["a", "b", "c"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_for_one_restarts_the_failed_child_and_those_after_it() {
    let rt = Runtime::new();
    let (tx, mut rx) = unbounded_channel();
    let spec = three(Strategy::RestForOne, &tx);
    rt.spawn(move |ctx| supervise(ctx, spec));
    let pids = starts(&mut rx, 3).await;
    rt.send(pids[1].1, Payload::value(Order::Crash));
    assert_eq!(next(&mut rx).await, Event::Stop("c"));
    let again: Vec<_> = starts(&mut rx, 2)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(again, ["b", "c"]);
    assert!(rt.is_alive(pids[0].1), "a is untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_types_decide_what_is_restarted() {
    let rt = Runtime::new();
    let (tx, mut rx) = unbounded_channel();
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .intensity(10, Duration::from_secs(60))
        .child(child("perm", tx.clone()).restart(Restart::Permanent))
        .child(child("trans", tx.clone()).restart(Restart::Transient))
        .child(child("temp", tx.clone()).restart(Restart::Temporary));
    rt.spawn(move |ctx| supervise(ctx, spec));
    let pids = starts(&mut rx, 3).await;
    let (perm, trans, temp) = (pids[0].1, pids[1].1, pids[2].1);

    // A permanent child is restarted even after a normal exit.
    rt.send(perm, Payload::value(Order::Finish));
    let (id, perm2) = starts(&mut rx, 1).await[0];
    assert_eq!(id, "perm");
    // A transient child is restarted after a crash ...
    rt.send(trans, Payload::value(Order::Crash));
    let (id, trans2) = starts(&mut rx, 1).await[0];
    assert_eq!(id, "trans");
    // ... but not after a normal exit.
    let trans2_end = rt.watch(trans2);
    rt.send(trans2, Payload::value(Order::Finish));
    assert_eq!(trans2_end.await, ExitReason::Normal);
    // A temporary child is never restarted.
    let temp_end = rt.watch(temp);
    rt.send(temp, Payload::value(Order::Crash));
    temp_end.await;
    // Crash perm again: the supervisor handles exits in order, so the next event must
    // be perm's restart; a restart of trans or temp would show up first.
    rt.send(perm2, Payload::value(Order::Crash));
    let (id, _) = starts(&mut rx, 1).await[0];
    assert_eq!(
        id, "perm",
        "nothing was restarted for the transient or temporary exit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exceeding_restart_intensity_stops_the_supervisor_and_tells_its_parent() {
    let rt = Runtime::new();
    let (tx, mut rx) = unbounded_channel();
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .intensity(2, Duration::from_secs(60))
        .child(child("flaky", tx.clone()))
        .child(child("steady", tx.clone()));
    let (sup_tx, sup_rx) = tokio::sync::oneshot::channel();
    let parent = rt.spawn(move |ctx| async move {
        ctx.trap_exit(true);
        let sup = ctx.spawn_link(move |c| supervise(c, spec));
        sup_tx.send(sup).unwrap();
        loop {
            if let Message::Exit(sig) = ctx.recv().await
                && sig.from == sup
            {
                return sig.reason;
            }
        }
    });
    let sup = sup_rx.await.unwrap();
    let parent_end = rt.watch(parent);
    let mut flaky = starts(&mut rx, 2).await[0].1;
    for _ in 0..2 {
        rt.send(flaky, Payload::value(Order::Crash));
        flaky = starts(&mut rx, 1).await[0].1;
    }
    // The third crash within the window is one too many.
    rt.send(flaky, Payload::value(Order::Crash));
    assert_eq!(next(&mut rx).await, Event::Stop("steady"));
    assert_eq!(parent_end.await, ExitReason::MaxRestartIntensity);
    assert!(!rt.is_alive(sup));
}

#[tokio::test(start_paused = true)]
async fn restarts_outside_the_window_do_not_count() {
    let rt = Runtime::new();
    let (tx, mut rx) = unbounded_channel();
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .intensity(1, Duration::from_secs(5))
        .child(child("flaky", tx.clone()));
    let sup = rt.spawn(move |ctx| supervise(ctx, spec));
    let mut flaky = starts(&mut rx, 1).await[0].1;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_secs(6)).await;
        rt.send(flaky, Payload::value(Order::Crash));
        flaky = starts(&mut rx, 1).await[0].1;
    }
    assert!(rt.is_alive(sup));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_ignores_shutdown_is_killed_after_its_timeout() {
    const GRACE: Duration = Duration::from_millis(50);
    let rt = Runtime::new();
    // Each child reports its start and every message it gets, with when it got it.
    let (tx, mut rx) = unbounded_channel::<(&'static str, Pid, Option<Message>, Instant)>();
    let stubborn_child = |id: &'static str, tx: UnboundedSender<_>| {
        ChildSpec::worker(id, move |ctx| {
            let tx = tx.clone();
            async move {
                ctx.trap_exit(true);
                let _ = tx.send((id, ctx.pid(), None, Instant::now()));
                loop {
                    // Ignores everything, the shutdown signal included.
                    let message = ctx.recv().await;
                    let _ = tx.send((id, ctx.pid(), Some(message), Instant::now()));
                }
            }
        })
    };
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .child(stubborn_child("stubborn", tx.clone()).shutdown(Shutdown::Timeout(GRACE)))
        .child(stubborn_child("brutal", tx).shutdown(Shutdown::BrutalKill));
    let sup = rt.spawn(move |ctx| supervise(ctx, spec));
    let mut started = Vec::new();
    for _ in 0..2 {
        let (id, pid, message, _) = bounded(rx.recv()).await.unwrap();
        assert!(message.is_none(), "{id} got a message before the shutdown");
        started.push((id, pid));
    }
    started.sort();
    let [("brutal", brutal), ("stubborn", stubborn)] = started[..] else {
        panic!("{started:?}")
    };
    let ended_at = |pid| {
        let watch = rt.watch(pid);
        tokio::spawn(async move { (watch.await, Instant::now()) })
    };
    let (stubborn_end, brutal_end) = (ended_at(stubborn), ended_at(brutal));
    let end = rt.watch(sup);
    rt.exit(sup, ExitReason::Shutdown);
    assert_eq!(bounded(end).await, ExitReason::Shutdown);
    let (brutal_reason, _) = bounded(brutal_end).await.unwrap();
    let (stubborn_reason, stubborn_ended) = bounded(stubborn_end).await.unwrap();
    assert_eq!(brutal_reason, ExitReason::Killed);
    assert_eq!(stubborn_reason, ExitReason::Killed);

    // Brutal kill: no signal first. Timeout: the shutdown signal (trapped, so ignored),
    // then the kill once the grace had passed.
    let mut received = Vec::new();
    while let Ok((id, _, Some(message), at)) = rx.try_recv() {
        received.push((id, message, at));
    }
    let [("stubborn", Message::Exit(signal), signalled)] = &received[..] else {
        panic!("expected only the stubborn child's shutdown signal, got {received:?}")
    };
    assert_eq!((signal.from, &signal.reason), (sup, &ExitReason::Shutdown));
    assert!(
        stubborn_ended.duration_since(*signalled) >= GRACE,
        "killed {:?} after the signal, within its {GRACE:?} grace",
        stubborn_ended.duration_since(*signalled)
    );
}

/// Fails the test instead of hanging when `future` takes more than 30 s.
async fn bounded<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), future)
        .await
        .expect("done within 30 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_shutdown_stops_a_supervision_tree_in_reverse_order() {
    let rt = Runtime::new();
    let (tx, mut rx) = unbounded_channel();
    let inner = SupervisorSpec::new(Strategy::OneForOne)
        .child(child("inner-1", tx.clone()))
        .child(child("inner-2", tx.clone()));
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .child(child("first", tx.clone()))
        .child(ChildSpec::supervisor("inner", inner))
        .child(child("last", tx.clone()));
    rt.spawn(move |ctx| supervise(ctx, spec));
    let started: Vec<_> = starts(&mut rx, 4)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(started, ["first", "inner-1", "inner-2", "last"]);
    rt.shutdown(Duration::from_secs(5)).await;
    let mut stops = Vec::new();
    while let Ok(e) = rx.try_recv() {
        stops.push(e);
    }
    assert_eq!(
        stops,
        [
            Event::Stop("last"),
            Event::Stop("inner-2"),
            Event::Stop("inner-1"),
            Event::Stop("first")
        ]
    );
    assert_eq!(rt.process_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_fails_to_start_stops_the_supervisor() {
    let rt = Runtime::new();
    let (tx, mut rx) = unbounded_channel();
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .child(child("ok", tx.clone()))
        .child(ChildSpec::new("broken", |_ctx| {
            Err(ExitReason::custom("cannot start"))
        }));
    let (_sup, end) = rt.spawn_watched(Default::default(), move |ctx| supervise(ctx, spec));
    assert_eq!(end.await, ExitReason::custom("cannot start"));
    // The child that did start was stopped again.
    let events = [next(&mut rx).await, next(&mut rx).await];
    assert!(matches!(events[0], Event::Start("ok", _)));
    assert_eq!(events[1], Event::Stop("ok"));
}

/// A child that crashes the moment it starts is a started child that ended, not one
/// that failed to start: it is restarted until the intensity is spent, however the
/// crash races the supervisor's link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_crashes_as_it_starts_is_restarted_until_the_intensity_is_spent() {
    let rt = Runtime::new();
    for _ in 0..50 {
        let spec = SupervisorSpec::new(Strategy::OneForOne)
            .intensity(2, Duration::from_secs(60))
            .child(ChildSpec::new("doomed", |ctx| {
                let pid = ctx.spawn_link(|_ctx| async { ExitReason::crashed("at once") });
                // Let it crash before the supervisor sees it (`block_in_place` hands this
                // worker's queued tasks, the child among them, to another thread).
                tokio::task::block_in_place(|| {
                    let started = std::time::Instant::now();
                    while ctx.runtime().is_alive(pid) && started.elapsed() < Duration::from_secs(5)
                    {
                        std::thread::yield_now();
                    }
                });
                Ok(pid)
            }));
        let (_sup, watch) = rt.spawn_watched(Default::default(), move |ctx| supervise(ctx, spec));
        assert_eq!(watch.await, ExitReason::MaxRestartIntensity);
    }
    assert_eq!(rt.stats().restarts, 50 * 2);
}
