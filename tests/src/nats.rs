//! Raw NATS requests for tests that set up or inspect streams behind the bus's back.

/// A raw JetStream API request (`subject` after `$JS.API.`) on a connection of its own.
pub async fn api(url: &str, subject: &str, body: serde_json::Value) -> serde_json::Value {
    let client = async_nats::connect(url).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let reply: serde_json::Value = js.request(subject.to_owned(), &body).await.unwrap();
    client.drain().await.unwrap();
    reply
}

/// The info of stream `name`, which must exist.
pub async fn stream_info(url: &str, name: &str) -> serde_json::Value {
    let info = api(url, &format!("STREAM.INFO.{name}"), serde_json::json!({})).await;
    assert!(info.get("error").is_none(), "{info}");
    info
}

/// How many messages stream `name` holds.
pub async fn stream_messages(url: &str, name: &str) -> u64 {
    stream_info(url, name).await["state"]["messages"]
        .as_u64()
        .unwrap()
}
