//! Scheduler behaviour, asserted from its execution log (salsa style).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use quantgraph_nodes::graph::{Graph, PortRef};
use quantgraph_nodes::scheduler::{Event, NodeOutcome};
use quantgraph_nodes::{NodeError, Scheduler};

/// c1 ─┬─ a1 ── a3 (sink)
/// c2 ─┘        │
///       c4 ─ a4 (sink, separate branch)
fn fixture() -> (Graph, [quantgraph_nodes::NodeId; 6]) {
    let r = registry();
    let mut g = Graph::new();
    let c1 = konst(&mut g, &r, 1.0);
    let c2 = konst(&mut g, &r, 2.0);
    let a1 = add(&mut g, &r, c1, Some(c2));
    let a3 = add(&mut g, &r, a1, None);
    let c4 = konst(&mut g, &r, 10.0);
    let a4 = add(&mut g, &r, c4, None);
    (g, [c1, c2, a1, a3, c4, a4])
}

#[test]
fn editing_one_param_reruns_exactly_it_and_its_dependents() {
    let (mut g, [c1, c2, a1, a3, c4, a4]) = fixture();
    let s = Scheduler::new(registry());
    let e = s.evaluate(&g, &[]);
    assert_eq!(scalar(&e, a3), 3.0);
    assert_eq!(scalar(&e, a4), 10.0);
    assert_eq!(ran(&s), vec![c1, c2, a1, a3, c4, a4]);

    g.set_param(c2, "value", 5.0.into()).unwrap();
    let e = s.evaluate(&g, &[]);
    assert_eq!(scalar(&e, a3), 6.0);
    assert_eq!(ran(&s), vec![c2, a1, a3]);
    assert!(matches!(e.outcomes[&a4], NodeOutcome::Ready { cached: true, .. }));
}

#[test]
fn re_requesting_without_edits_evaluates_nothing() {
    let (g, _) = fixture();
    let s = Scheduler::new(registry());
    s.evaluate(&g, &[]);
    s.take_log();
    let e = s.evaluate(&g, &[]);
    assert_eq!(ran(&s), vec![]);
    assert!(e.outcomes.values().all(|o| matches!(o, NodeOutcome::Ready { cached: true, .. })));
}

#[test]
fn an_unrequested_branch_is_never_evaluated() {
    let (g, [c1, c2, a1, a3, _c4, _a4]) = fixture();
    let s = Scheduler::new(registry());
    let e = s.evaluate(&g, &[a3]);
    assert_eq!(ran(&s), vec![c1, c2, a1, a3]);
    assert_eq!(e.outcomes.len(), 4);
    // Asking for a middle node runs only its ancestors, and they are cached now.
    let e = s.evaluate(&g, &[a1]);
    assert_eq!(ran(&s), vec![]);
    assert_eq!(scalar(&e, a1), 3.0);
}

#[test]
fn undo_finds_old_results_in_the_cache() {
    let (mut g, [_c1, c2, _a1, a3, _c4, _a4]) = fixture();
    let s = Scheduler::new(registry());
    s.evaluate(&g, &[]);
    g.set_param(c2, "value", 7.0.into()).unwrap();
    s.evaluate(&g, &[]);
    s.take_log();
    g.set_param(c2, "value", 2.0.into()).unwrap();
    let e = s.evaluate(&g, &[]);
    assert_eq!(ran(&s), vec![]);
    assert_eq!(scalar(&e, a3), 3.0);
}

#[test]
fn editing_a_file_on_disk_invalidates_the_node_that_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.bin");
    std::fs::write(&path, b"abc").unwrap();
    let r = registry();
    let mut g = Graph::new();
    let f = g.add_node(&r, "test.file", [0.0, 0.0]).unwrap();
    g.set_param(f, "path", path.to_string_lossy().as_ref().into()).unwrap();
    let a = add(&mut g, &r, f, None);
    let s = Scheduler::new(r);
    assert_eq!(scalar(&s.evaluate(&g, &[]), a), 3.0);
    assert_eq!(ran(&s), vec![f, a]);
    s.evaluate(&g, &[]);
    assert_eq!(ran(&s), vec![]);
    std::fs::write(&path, b"abcdef").unwrap();
    assert_eq!(scalar(&s.evaluate(&g, &[]), a), 6.0);
    assert_eq!(ran(&s), vec![f, a]);
}

#[test]
fn a_failing_node_fails_alone_and_blocks_only_its_dependents() {
    let r = registry();
    let mut g = Graph::new();
    let c = konst(&mut g, &r, 1.0);
    let fail = g.add_node(&r, "test.fail", [0.0, 0.0]).unwrap();
    g.set_param(fail, "message", "bad input: expected 3 channels, found 1".into()).unwrap();
    let after = add(&mut g, &r, fail, None);
    let after2 = add(&mut g, &r, after, None);
    let ok = add(&mut g, &r, c, None);
    let s = Scheduler::new(r);
    let e = s.evaluate(&g, &[]);
    assert_eq!(e.error(fail), Some(&NodeError::Failed("bad input: expected 3 channels, found 1".into())));
    assert!(matches!(e.outcomes[&after], NodeOutcome::Blocked { by } if by == fail));
    assert!(matches!(e.outcomes[&after2], NodeOutcome::Blocked { by } if by == fail));
    assert_eq!(scalar(&e, ok), 1.0);
    assert_eq!(ran(&s), vec![c, fail, ok]);
}

#[test]
fn a_panicking_node_is_contained() {
    let r = registry();
    let mut g = Graph::new();
    let p = g.add_node(&r, "test.panic", [0.0, 0.0]).unwrap();
    let after = add(&mut g, &r, p, None);
    let c = konst(&mut g, &r, 4.0);
    let ok = add(&mut g, &r, c, None);
    let s = Scheduler::new(r);
    let e = s.evaluate(&g, &[]);
    assert_eq!(e.error(p), Some(&NodeError::Panicked("test.panic always panics".into())));
    assert!(matches!(e.outcomes[&after], NodeOutcome::Blocked { by } if by == p));
    assert_eq!(scalar(&e, ok), 4.0);
    // The scheduler still works afterwards.
    let e = s.evaluate(&g, &[ok]);
    assert_eq!(scalar(&e, ok), 4.0);
}

#[test]
fn unconnected_required_input_and_unknown_kind_fail_on_their_node() {
    let r = registry();
    let mut g = Graph::new();
    let lonely = g.add_node(&r, "test.add", [0.0, 0.0]).unwrap();
    let c = konst(&mut g, &r, 1.0);
    let s = Scheduler::new(r);
    let e = s.evaluate(&g, &[]);
    assert_eq!(e.error(lonely).map(|e| e.to_string()).as_deref(), Some("input 'a': not connected"));
    assert_eq!(scalar(&e, c), 1.0);
}

#[test]
fn independent_branches_run_in_parallel() {
    let r = registry();
    let mut g = Graph::new();
    let c = konst(&mut g, &r, 1.0);
    let mut slows = Vec::new();
    for i in 0..2 {
        let s = g.add_node(&r, "test.slow", [0.0, 0.0]).unwrap();
        g.set_param(s, "millis", 300.into()).unwrap();
        g.set_param(s, "tag", f64::from(i).into()).unwrap();
        g.connect(&r, PortRef::new(c, "out"), PortRef::new(s, "x")).unwrap();
        slows.push(s);
    }
    let s = Scheduler::new(r);
    let mut running = std::collections::BTreeSet::new();
    let mut both_at_once = false;
    let h = s.request(&g, &[]);
    let mut e = quantgraph_nodes::Evaluation::default();
    while let Some(ev) = h.next_event(Duration::from_secs(10)) {
        match &ev {
            Event::Started { node } => {
                running.insert(*node);
            }
            Event::Finished { node, .. } => {
                running.remove(node);
            }
            _ => {}
        }
        both_at_once |= slows.iter().all(|n| running.contains(n));
        if quantgraph_nodes::scheduler::collect(&mut e, [ev]) {
            break;
        }
    }
    assert_eq!(scalar(&e, slows[0]) + scalar(&e, slows[1]), 3.0);
    assert!(both_at_once, "the two independent slow branches never ran at the same time");
}

#[test]
fn a_newer_edit_cancels_stale_work_and_no_stale_result_is_delivered() {
    let r = registry();
    let mut g = Graph::new();
    let c = konst(&mut g, &r, 1.0);
    let slow = g.add_node(&r, "test.slow", [0.0, 0.0]).unwrap();
    g.set_param(slow, "millis", 5_000.into()).unwrap();
    g.connect(&r, PortRef::new(c, "out"), PortRef::new(slow, "x")).unwrap();
    let sink = add(&mut g, &r, slow, None);
    let s = Scheduler::new(r.clone());

    let first = s.request(&g, &[]);
    // Wait until the slow node has started.
    loop {
        match first.next_event(Duration::from_secs(5)) {
            Some(Event::Started { node }) if node == slow => break,
            Some(_) => {}
            None => panic!("slow node never started"),
        }
    }
    g.set_param(slow, "millis", 20.into()).unwrap();
    g.set_param(c, "value", 2.0.into()).unwrap();
    let cancelled_before = quantgraph_nodes::testing::slow_cancellations(5_000);
    let second = s.request(&g, &[]);
    let first_events: Vec<Event> = first.wait_events();
    assert!(matches!(first_events.last(), Some(Event::Superseded)));
    assert!(
        !first_events.iter().any(|e| matches!(e, Event::Finished { node, .. } if *node == slow || *node == sink)),
        "the stale request delivered a result: {first_events:?}"
    );
    let e = second.wait();
    // The stale 5 s evaluation saw the cancellation and stopped.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while quantgraph_nodes::testing::slow_cancellations(5_000) == cancelled_before {
        assert!(std::time::Instant::now() < deadline, "the 5 s node was never cancelled");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(scalar(&e, sink), 2.0);
    // The result equals a from-scratch evaluation.
    let fresh = Scheduler::new(r);
    assert_eq!(scalar(&fresh.evaluate(&g, &[]), sink), 2.0);
    // The cancelled 5 s evaluation left nothing in the cache under its key.
    g.set_param(slow, "millis", 5_000.into()).unwrap();
    g.set_param(c, "value", 1.0.into()).unwrap();
    let key = s.keys(&g, &[])[&slow];
    assert!(!s.is_cached(key));
}

#[test]
fn stop_cancels_the_request() {
    let r = registry();
    let mut g = Graph::new();
    let c = konst(&mut g, &r, 1.0);
    let slow = g.add_node(&r, "test.slow", [0.0, 0.0]).unwrap();
    g.set_param(slow, "millis", 10_000.into()).unwrap();
    g.connect(&r, PortRef::new(c, "out"), PortRef::new(slow, "x")).unwrap();
    let sink = add(&mut g, &r, slow, None);
    let s = Scheduler::new(r);
    let h = s.request(&g, &[]);
    // Cancel once the slow node is running (an event, not a guess at timing).
    loop {
        match h.next_event(Duration::from_secs(5)) {
            Some(Event::Started { node }) if node == slow => break,
            Some(_) => {}
            None => panic!("slow node never started"),
        }
    }
    s.cancel();
    let e = h.wait();
    assert!(matches!(e.outcomes[&slow], NodeOutcome::Cancelled));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while quantgraph_nodes::testing::slow_cancellations(10_000) == 0 {
        assert!(std::time::Instant::now() < deadline, "the running node never saw the cancellation");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(matches!(e.outcomes[&sink], NodeOutcome::Cancelled | NodeOutcome::Blocked { .. }));
}

#[test]
fn progress_is_reported() {
    let r = registry();
    let mut g = Graph::new();
    let c = konst(&mut g, &r, 1.0);
    let slow = g.add_node(&r, "test.slow", [0.0, 0.0]).unwrap();
    g.set_param(slow, "millis", 100.into()).unwrap();
    g.connect(&r, PortRef::new(c, "out"), PortRef::new(slow, "x")).unwrap();
    let s = Scheduler::new(r);
    let events = s.request(&g, &[]).wait_events();
    let progress: Vec<f32> = events
        .iter()
        .filter_map(|e| match e {
            Event::Progress { node, fraction, .. } if *node == slow => Some(*fraction),
            _ => None,
        })
        .collect();
    assert!(progress.len() > 3, "{progress:?}");
    assert!(progress.windows(2).all(|w| w[0] <= w[1]));
    assert!(events.iter().any(|e| matches!(e, Event::Finished { node, duration, .. } if *node == slow && *duration >= Duration::from_millis(100))));
}

#[test]
fn the_cache_is_bounded_and_evicts_least_recently_used() {
    let r = registry();
    let mut g = Graph::new();
    let c = konst(&mut g, &r, 1.0);
    // Each scalar entry costs 8 + 64 bytes: a budget of 200 holds two.
    let s = Scheduler::with_budget(r.clone(), 200);
    for v in [1.0, 2.0, 3.0] {
        g.set_param(c, "value", v.into()).unwrap();
        s.evaluate(&g, &[]);
    }
    assert!(s.cache_bytes() <= 200);
    s.take_log();
    g.set_param(c, "value", 3.0.into()).unwrap();
    s.evaluate(&g, &[]);
    assert_eq!(ran(&s), vec![]);
    g.set_param(c, "value", 1.0.into()).unwrap();
    s.evaluate(&g, &[]);
    assert_eq!(ran(&s), vec![c], "the oldest entry should have been evicted");
}

trait WaitEvents {
    fn wait_events(self) -> Vec<Event>;
}

impl WaitEvents for quantgraph_nodes::scheduler::RunHandle {
    fn wait_events(self) -> Vec<Event> {
        let mut out = Vec::new();
        while let Some(e) = self.next_event(Duration::from_secs(30)) {
            let end = matches!(e, Event::Done | Event::Superseded);
            out.push(e);
            if end {
                break;
            }
        }
        out
    }
}

/// One validation: the scheduler fails a node with the first of `Graph::node_problems`, and
/// `validate` (what `check` prints) lists the same problems with the same words.
#[test]
fn the_scheduler_and_check_report_a_nodes_problems_alike() {
    let r = registry();
    let mut g = Graph::new();
    let c = konst(&mut g, &r, 1.0);
    let lonely = g.add_node(&r, "test.add", [0.0, 0.0]).unwrap();
    g.set_param(c, "value", "not a number".into()).unwrap();
    let problems = g.node_problems(&r, lonely);
    assert_eq!(problems.iter().map(|p| p.to_string()).collect::<Vec<_>>(), ["input 'a': not connected"]);
    let e = Scheduler::new(r.clone()).evaluate(&g, &[lonely, c]);
    assert_eq!(e.error(lonely), Some(&problems[0]));
    let listed = g.validate(&r);
    assert!(listed.contains(&(Some(lonely), "input 'a': not connected".to_owned())), "{listed:?}");
    let c_problem = g.node_problems(&r, c).remove(0);
    assert!(matches!(c_problem, NodeError::Param { .. }), "{c_problem:?}");
    assert_eq!(e.error(c), Some(&c_problem));
    assert!(listed.contains(&(Some(c), c_problem.to_string())), "{listed:?}");
}
