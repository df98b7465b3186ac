use std::cell::RefCell;

use super::*;

const NO_PAUSE: Backoff = Backoff::fixed(Duration::ZERO);

fn immediate(attempts: u32) -> Policy {
    Policy {
        attempts,
        backoff: NO_PAUSE,
        deadline: None,
    }
}

#[test]
fn the_pauses_grow_saturate_and_never_panic() {
    // pg-basebackup-fetch's default: 500 ms × 1.5, no cap.
    let basebackup = Backoff::exponential(Duration::from_millis(500), 1.5, Duration::MAX);
    assert_eq!(basebackup.pause(1), Duration::from_millis(500));
    assert_eq!(basebackup.pause(2), Duration::from_millis(750));
    assert_eq!(basebackup.pause(3), Duration::from_millis(1125));
    let huge = Backoff::exponential(Duration::from_secs(1), 1e300, Duration::MAX);
    assert_eq!(huge.pause(2), Duration::MAX);
    assert_eq!(huge.pause(u32::MAX), Duration::MAX);
    for factor in [-1.0, f64::NAN] {
        let odd = Backoff::exponential(Duration::from_secs(1), factor, Duration::MAX);
        assert_eq!(odd.pause(1), Duration::from_secs(1));
        assert_eq!(odd.pause(2), Duration::ZERO);
    }
    // pg-sync-safekeepers': min(1.1^n, 3) s.
    let sync = Backoff::exponential(Duration::from_millis(1100), 1.1, Duration::from_secs(3));
    assert_eq!(sync.pause(1), Duration::from_secs_f64(1.1));
    assert!(sync.pause(5) > sync.pause(4));
    assert_eq!(sync.pause(20), Duration::from_secs(3));
    // pg-lsn-lease's: 500 ms × 1.5, at most 60 s.
    let lease = Backoff::exponential(Duration::from_millis(500), 1.5, Duration::from_secs(60));
    assert_eq!(lease.pause(12).as_millis(), 43_248);
    assert_eq!(lease.pause(13), Duration::from_secs(60));
    assert_eq!(
        Backoff::fixed(Duration::from_millis(100)).pause(7),
        Duration::from_millis(100)
    );
}

#[test]
fn a_success_reports_its_attempt_and_an_error_not_worth_retrying_ends_at_once() {
    let mut calls = 0;
    let outcome = Retry::new(&immediate(5))
        .when(|error: &&str| *error == "busy")
        .run(|attempt| {
            calls += 1;
            assert_eq!(attempt.number, calls);
            match calls {
                1 | 2 => Err("busy"),
                _ => Ok("done"),
            }
        });
    assert_eq!(outcome, Ok(("done", 3)));
    let mut calls = 0;
    let outcome: Result<((), u32), _> = Retry::new(&immediate(5))
        .when(|error: &&str| *error == "busy")
        .run(|_| {
            calls += 1;
            Err(if calls == 1 { "busy" } else { "refused" })
        });
    assert_eq!(
        outcome,
        Err(Stop::Final {
            attempts: 2,
            error: "refused"
        })
    );
    assert_eq!(calls, 2);
}

#[test]
fn the_attempts_are_bounded_and_each_pause_is_announced() {
    let announced = RefCell::new(Vec::new());
    let slept = RefCell::new(Vec::new());
    let backoff = Backoff::exponential(Duration::from_millis(1), 2.0, Duration::from_millis(3));
    let policy = Policy {
        attempts: 4,
        backoff,
        deadline: None,
    };
    let outcome: Result<((), u32), _> = Retry::new(&policy)
        .when(|_: &u32| true)
        .before_pause(|error, attempt, pause| announced.borrow_mut().push((*error, attempt, pause)))
        .pause_with(|pause| {
            slept.borrow_mut().push(pause);
            Ok(())
        })
        .run(|attempt| Err(attempt.number * 10));
    assert_eq!(
        outcome,
        Err(Stop::Exhausted {
            attempts: 4,
            last: 40
        })
    );
    let ms = Duration::from_millis;
    assert_eq!(
        announced.into_inner(),
        [(10, 1, ms(1)), (20, 2, ms(2)), (30, 3, ms(3))]
    );
    assert_eq!(slept.into_inner(), [ms(1), ms(2), ms(3)]);
    // One attempt in all: no retry, no pause.
    let outcome: Result<((), u32), _> = Retry::new(&immediate(1))
        .when(|_: &u32| true)
        .pause_with(|_| panic!("no pause after the last attempt"))
        .run(|_| Err(7));
    assert_eq!(
        outcome,
        Err(Stop::Exhausted {
            attempts: 1,
            last: 7
        })
    );
}

#[test]
fn a_pause_that_fails_ends_the_loop_with_its_error() {
    let outcome: Result<((), u32), _> = Retry::new(&immediate(10))
        .when(|error: &&str| *error == "busy")
        .pause_with(|_| Err("interrupted"))
        .run(|_| Err("busy"));
    assert_eq!(
        outcome,
        Err(Stop::Final {
            attempts: 1,
            error: "interrupted"
        })
    );
}

#[test]
fn no_retry_whose_pause_would_end_past_the_deadline_without_progress() {
    // Pauses of 300 ms under a deadline of 500: the second pause would end at 600.
    let policy = Policy {
        attempts: u32::MAX,
        backoff: Backoff::fixed(Duration::from_millis(300)),
        deadline: Some(Duration::from_millis(500)),
    };
    let started = Instant::now();
    let mut lefts = Vec::new();
    let outcome: Result<((), u32), _> = Retry::new(&policy).when(|_: &()| true).run(|attempt| {
        lefts.push(attempt.left().unwrap());
        Err(())
    });
    let Err(Stop::OutOfTime {
        attempts,
        without_progress,
        last: (),
    }) = outcome
    else {
        panic!("{outcome:?}");
    };
    assert_eq!(attempts, 2);
    assert!(
        without_progress >= Duration::from_millis(300),
        "{without_progress:?}"
    );
    // Given up at once, not after sleeping into the deadline.
    assert!(started.elapsed() < Duration::from_millis(500), "slept on");
    assert!(lefts[1] <= Duration::from_millis(200), "{lefts:?}");
    // Progress ticked by the operation keeps the loop going past the deadline's length (3
    // pauses of 300 ms).
    let progress = Progress::new();
    let mut calls = 0;
    let outcome = Retry::new(&policy)
        .when(|_: &()| true)
        .progress(&progress)
        .run(|attempt| {
            calls += 1;
            attempt.progress().tick();
            if calls < 4 {
                Err(())
            } else {
                Ok(calls)
            }
        });
    assert_eq!(outcome, Ok((4, 4)));
}

#[test]
fn the_progress_clock_restarts_on_a_tick() {
    let clock = Progress::new();
    std::thread::sleep(Duration::from_millis(30));
    assert!(clock.without_progress() >= Duration::from_millis(30));
    clock.clone().tick();
    assert!(clock.without_progress() < Duration::from_millis(30));
}
