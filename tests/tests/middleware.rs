//! Middleware behaviour and ordering (first added = outermost), on the memory bus.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bus::middleware::{ErrorHandler, Next, Recovery, Retry, Timeout, from_fn};
use bus::{Delivery, ErrorClass, Event, EventBus, HandlerError, RawMessage, Subscription};
use tests::Recorder;
use tests::events::Ping;

const WAIT: Duration = Duration::from_secs(10);

fn tracer(name: &'static str, log: Arc<Recorder<String>>) -> impl bus::middleware::Middleware {
    from_fn(move |msg: RawMessage, next: Next| {
        let log = Arc::clone(&log);
        async move {
            log.push(format!("{name} in"));
            let outcome = next.run(msg).await;
            let label = match &outcome {
                Ok(()) => "ok".to_owned(),
                Err(e) => e.class().to_string(),
            };
            log.push(format!("{name} out {label}"));
            outcome
        }
    })
}

fn bus() -> EventBus {
    let mut config = bus::EventBusConfig::memory();
    config.consumer.backoff = vec![Duration::from_millis(20)];
    config.max_deliver = 1;
    bus::MemoryBus::new(config).unwrap().into()
}

#[tokio::test]
async fn first_layer_is_outermost() {
    let bus = bus();
    let log = Recorder::new();
    let l = Arc::clone(&log);
    bus.subscribe(
        Subscription::new("ordered_layers", Ping::TOPIC)
            .layer(tracer("a", Arc::clone(&log)))
            .layer(tracer("b", Arc::clone(&log)))
            .layer(tracer("c", Arc::clone(&log)))
            .handler(move |_: Ping| {
                l.push("handler".to_owned());
                async { Ok::<_, HandlerError>(()) }
            }),
    )
    .await
    .unwrap();
    bus.publish(&Ping::new(1)).await.unwrap();
    log.wait_for(7, WAIT).await;
    assert_eq!(
        log.items(),
        [
            "a in", "b in", "c in", "handler", "c out ok", "b out ok", "a out ok"
        ]
    );
    bus.close().await.unwrap();
}

#[tokio::test]
async fn retry_reruns_retryable_errors_in_process_only() {
    let bus = bus();
    let calls = Recorder::<(u64, u32)>::new();
    let c = Arc::clone(&calls);
    bus.subscribe(
        Subscription::new("retried", Ping::TOPIC)
            .layer(Retry::new(3).initial_delay(Duration::from_millis(5)))
            .handler(move |e: Ping, d: Delivery| {
                c.push((e.seq, d.attempt()));
                let n = c.items().iter().filter(|(s, _)| *s == e.seq).count();
                async move {
                    match e.seq {
                        // Retryable: fails twice, then succeeds on the third in-process run.
                        1 if n < 3 => Err(HandlerError::retryable("flaky")),
                        // Permanent: never retried.
                        2 => Err(HandlerError::permanent("bad")),
                        _ => Ok(()),
                    }
                }
            }),
    )
    .await
    .unwrap();
    bus.publish(&Ping::new(1)).await.unwrap();
    bus.publish(&Ping::new(2)).await.unwrap();
    calls.wait_for(4, WAIT).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let calls = calls.items();
    assert_eq!(calls.iter().filter(|(s, _)| *s == 1).count(), 3);
    assert_eq!(calls.iter().filter(|(s, _)| *s == 2).count(), 1);
    assert!(
        calls.iter().all(|(_, attempt)| *attempt == 1),
        "in-process retries keep the delivery attempt"
    );
    let dead = bus.as_memory().unwrap().dead_letters();
    assert_eq!(dead.len(), 1, "only the permanent failure is dead-lettered");
    bus.close().await.unwrap();
}

#[tokio::test]
async fn each_retry_attempt_gets_its_own_timeout() {
    let bus = bus();
    let log = Recorder::new();
    let runs = Arc::new(AtomicUsize::new(0));
    let r = Arc::clone(&runs);
    bus.subscribe(
        Subscription::new("retry_timeout", Ping::TOPIC)
            .layer(tracer("retry-outside", Arc::clone(&log)))
            .layer(Retry::new(3).initial_delay(Duration::from_millis(1)))
            .layer(Timeout::new(Duration::from_millis(50)))
            .handler(move |_: Ping| {
                let run = r.fetch_add(1, Ordering::SeqCst);
                async move {
                    if run < 2 {
                        tokio::time::sleep(Duration::from_secs(10)).await;
                    }
                    Ok::<_, HandlerError>(())
                }
            }),
    )
    .await
    .unwrap();
    bus.publish(&Ping::new(1)).await.unwrap();
    log.wait_for(2, WAIT).await;
    assert_eq!(log.items(), ["retry-outside in", "retry-outside out ok"]);
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    bus.close().await.unwrap();
}

#[tokio::test]
async fn recovery_turns_a_panic_into_an_error_outer_layers_see() {
    let bus = bus();
    let log = Recorder::new();
    bus.subscribe(
        Subscription::new("recovered", Ping::TOPIC)
            .layer(tracer("outer", Arc::clone(&log)))
            .layer(Recovery)
            .handler(|_: Ping| async {
                if true {
                    panic!("boom");
                }
                Ok::<_, HandlerError>(())
            }),
    )
    .await
    .unwrap();
    bus.publish(&Ping::new(1)).await.unwrap();
    log.wait_for(2, WAIT).await;
    assert_eq!(log.items(), ["outer in", "outer out panic"]);
    let memory = bus.as_memory().unwrap().clone();
    bus.close().await.unwrap();
    let dead = memory.dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0].headers.get(bus::headers::DLQ_ERROR).unwrap(),
        "handler panicked: boom"
    );
}

#[tokio::test]
async fn error_handler_maps_and_swallows() {
    let bus = bus();
    let seen = Recorder::<ErrorClass>::new();
    let s = Arc::clone(&seen);
    bus.subscribe(
        Subscription::new("mapped", Ping::TOPIC)
            .layer(ErrorHandler::new(move |err: HandlerError, _: &Delivery| {
                s.push(err.class());
                // Swallow "duplicate" errors, make everything else permanent.
                if err.to_string().contains("duplicate") {
                    Ok(())
                } else {
                    Err(HandlerError::permanent(err.into_source()))
                }
            }))
            .handler(|e: Ping| async move {
                if e.seq == 1 {
                    Err(HandlerError::retryable("duplicate order"))
                } else {
                    Err(HandlerError::retryable("upstream down"))
                }
            }),
    )
    .await
    .unwrap();
    bus.publish(&Ping::new(1)).await.unwrap();
    bus.publish(&Ping::new(2)).await.unwrap();
    seen.wait_for(2, WAIT).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let memory = bus.as_memory().unwrap().clone();
    bus.close().await.unwrap();
    let dead = memory.dead_letters();
    assert_eq!(dead.len(), 1, "the swallowed error is acknowledged");
    assert_eq!(
        dead[0].headers.get(bus::headers::DLQ_ERROR_CLASS),
        Some("permanent")
    );
    assert_eq!(seen.items(), [ErrorClass::Retryable, ErrorClass::Retryable]);
    assert_eq!(
        Ping::FULL_NAME,
        dead[0].headers.get(bus::headers::EVENT_TYPE).unwrap()
    );
}
