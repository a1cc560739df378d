//! TLS to a server whose certificate is signed by a private CA: trusted through `tls.ca_file`
//! it works end to end; without that CA the connection is refused with an error about TLS.
//!
//! Certificates are made for each run with the `openssl` command (Debian package `openssl`).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bus::config::Tls;
use bus::testing::NatsServer;
use bus::{BackendKind, Error, EventBus, EventBusConfig, HandlerError, Subscription};
use tests::Recorder;
use tests::events::Ping;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run `openssl` ({e}): install it with `apt-get install -y openssl`")
        });
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for 127.0.0.1 signed by it.
fn certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=bus test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
}

fn config(server: &NatsServer, ca: Option<&Path>) -> EventBusConfig {
    let mut c = EventBusConfig::cqc();
    c.backend = BackendKind::JetStream;
    c.servers = vec![server.url()];
    let mut tls = Tls::default();
    tls.required = true;
    tls.ca_file = ca.map(Path::to_path_buf);
    c.tls = Some(tls);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let server = NatsServer::builder()
        .config(&format!(
            "tls {{ cert_file: \"{}\", key_file: \"{}\" }}",
            dir.path().join("server.pem").display(),
            dir.path().join("server.key").display()
        ))
        .start()
        .await;

    let err = EventBus::connect(config(&server, None)).await.unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "untrusted CA: {err}");
    assert!(
        err.to_string().contains("TLS"),
        "says TLS is the problem: {err}"
    );

    let bus = EventBus::connect(config(&server, Some(&dir.path().join("ca.pem"))))
        .await
        .expect("trusting the CA connects");
    let rec = Recorder::<u64>::new();
    let r = rec.clone();
    bus.subscribe(
        Subscription::new("over_tls", bus::Event::TOPIC).handler(move |e: Ping| {
            r.push(e.seq);
            async { Ok::<_, HandlerError>(()) }
        }),
    )
    .await
    .unwrap();
    bus.publish(&Ping::new(7)).await.unwrap();
    rec.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(rec.items(), [7]);
    bus.close().await.unwrap();
}
