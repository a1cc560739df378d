//! Throwaway `nats-server` processes: [`NatsServer`] and [`NatsCluster`].

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::EventBusConfig;

/// How long a server may take to accept connections and answer JetStream requests.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The `nats-server` binary to run.
///
/// # Panics
///
/// When no binary is found, with the command that installs it.
pub fn nats_server_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("NATS_SERVER") {
        return PathBuf::from(p);
    }
    let debian = Path::new("/usr/sbin/nats-server");
    if debian.exists() {
        return debian.to_path_buf();
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("nats-server");
            if p.exists() {
                return p;
            }
        }
    }
    panic!(
        "nats-server not found (looked at $NATS_SERVER, /usr/sbin/nats-server and PATH): \
         install it with `apt-get install -y nats-server`, or set NATS_SERVER to its path"
    );
}

/// Ports handed out by this process, so two servers started at once never get the same one.
static PORTS: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A free loopback TCP port (not handed out before by this process).
pub fn free_port() -> u16 {
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("binding a loopback port");
        let mut taken = crate::util::lock(&PORTS);
        if taken.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
}

/// Options of a test server; finish with [`start`](NatsServerBuilder::start).
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct NatsServerBuilder {
    user: Option<(String, String)>,
    token: Option<String>,
    config: Option<String>,
    args: Vec<String>,
}

impl NatsServerBuilder {
    /// Requires this user and password.
    pub fn user(mut self, user: &str, password: &str) -> Self {
        self.user = Some((user.into(), password.into()));
        self
    }

    /// Requires this token.
    pub fn token(mut self, token: &str) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Extra configuration file text (nats-server config syntax), e.g. `max_payload: 4096` or an
    /// `authorization { ... }` block. The port, store and JetStream are set on the command line.
    pub fn config(mut self, text: &str) -> Self {
        self.config = Some(text.into());
        self
    }

    /// An extra command-line argument.
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Starts the server and waits until JetStream answers.
    ///
    /// # Panics
    ///
    /// When `nats-server` is missing or does not become ready, with its log.
    pub async fn start(self) -> NatsServer {
        let dir = tempfile::Builder::new()
            .prefix("bus-nats-")
            .tempdir()
            .expect("creating a temporary directory");
        let mut args = vec!["-js".to_owned(), "-a".into(), "127.0.0.1".into()];
        if let Some((u, p)) = &self.user {
            args.extend(["--user".into(), u.clone(), "--pass".into(), p.clone()]);
        }
        if let Some(t) = &self.token {
            args.extend(["--auth".into(), t.clone()]);
        }
        if let Some(text) = &self.config {
            let path = dir.path().join("server.conf");
            std::fs::write(&path, text).expect("writing the server config");
            args.extend(["-c".into(), path.display().to_string()]);
        }
        args.extend(self.args.iter().cloned());
        let mut server = NatsServer {
            child: None,
            port: 0,
            store: dir.path().join("store"),
            log: dir.path().join("server.log"),
            args,
            ready_probe: Probe::from(&self),
            _dir: dir,
        };
        // A port can be taken between picking and binding it; try a few.
        for _ in 0..5 {
            server.port = free_port();
            if server.spawn_and_wait().await {
                return server;
            }
        }
        panic!("nats-server did not start:\n{}", server.log_tail());
    }
}

/// Credentials the readiness probe needs.
#[derive(Clone, Debug)]
struct Probe {
    user: Option<(String, String)>,
    token: Option<String>,
    /// With an auth, operator or TLS block in a config file the probe cannot log in; it only
    /// waits for the port.
    port_only: bool,
}

impl From<&NatsServerBuilder> for Probe {
    fn from(b: &NatsServerBuilder) -> Self {
        Probe {
            user: b.user.clone(),
            token: b.token.clone(),
            port_only: b.config.as_deref().is_some_and(|c| {
                ["authorization", "accounts", "operator", "tls"]
                    .iter()
                    .any(|block| c.contains(block))
            }),
        }
    }
}

/// A `nats-server -js` on a loopback port with a temporary store, killed when dropped.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    store: PathBuf,
    log: PathBuf,
    args: Vec<String>,
    ready_probe: Probe,
    _dir: tempfile::TempDir,
}

impl NatsServer {
    /// Starts a server with JetStream and no auth.
    pub async fn start() -> NatsServer {
        Self::builder().start().await
    }

    /// A builder for a server with auth or other options.
    pub fn builder() -> NatsServerBuilder {
        NatsServerBuilder::default()
    }

    /// `nats://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JetStream store directory (kept across [`stop`](Self::stop) and
    /// [`start_again`](Self::start_again)).
    pub fn store_dir(&self) -> &Path {
        &self.store
    }

    /// A JetStream bus configuration pointing at this server, with the CQC conventions
    /// ([`EventBusConfig::cqc`]).
    pub fn bus_config(&self) -> EventBusConfig {
        EventBusConfig::jetstream([self.url()]).with_cqc_conventions()
    }

    /// Whether the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Stops the server gracefully (SIGTERM, then SIGKILL after 10 s); the store is kept.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = child.id() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .await;
        }
        if tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    }

    /// Kills the server at once (SIGKILL); the store is kept.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Starts the stopped server again, same port and store, and waits until it is ready.
    ///
    /// # Panics
    ///
    /// When it does not become ready, with its log.
    pub async fn start_again(&mut self) {
        if self.is_running() {
            return;
        }
        // The port may linger briefly after the old process; retry for a while.
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if self.spawn_and_wait().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("nats-server did not start again:\n{}", self.log_tail());
    }

    /// Stops and starts the server (same port and store).
    pub async fn restart(&mut self) {
        self.stop().await;
        self.start_again().await;
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(nats_server_binary());
        cmd.args(&self.args)
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-sd")
            .arg(&self.store)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// Spawns the process and waits until it answers; `false` if it exited (port taken...).
    async fn spawn_and_wait(&mut self) -> bool {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("opening the server log");
        let log2 = log.try_clone().expect("cloning the log handle");
        let mut cmd = self.command();
        cmd.stdout(Stdio::from(log)).stderr(Stdio::from(log2));
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => panic!(
                "cannot run {}: {e}: install it with `apt-get install -y nats-server`",
                nats_server_binary().display()
            ),
        };
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if !self.is_running() {
                self.child = None;
                return false;
            }
            if self.ready().await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "nats-server on port {} not ready after {READY_TIMEOUT:?}:\n{}",
            self.port,
            self.log_tail()
        );
    }

    async fn ready(&self) -> bool {
        if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            return false;
        }
        if self.ready_probe.port_only {
            return true;
        }
        jetstream_ready(&self.url(), &self.ready_probe).await
    }
}

/// Whether JetStream at `url` answers an account info request without error.
async fn jetstream_ready(url: &str, probe: &Probe) -> bool {
    let mut opts = async_nats::ConnectOptions::new().connection_timeout(Duration::from_secs(2));
    if let Some((u, p)) = &probe.user {
        opts = opts.user_and_password(u.clone(), p.clone());
    }
    if let Some(t) = &probe.token {
        opts = opts.token(t.clone());
    }
    let Ok(client) = opts.connect(url).await else {
        return false;
    };
    let js = async_nats::jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(2))
        .build(client.clone());
    let ok = matches!(
        js.request::<_, _, serde_json::Value>("INFO".to_owned(), &serde_json::json!({})).await,
        Ok(v) if v.get("error").is_none()
    );
    let _ = client.drain().await;
    ok
}

/// Creates and deletes a memory stream with `replicas` replicas through the node at `url`.
async fn place_probe_stream(url: &str, replicas: usize) -> Result<(), String> {
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(2))
        .connect(url)
        .await
        .map_err(|e| e.to_string())?;
    let js = async_nats::jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(5))
        .build(client.clone());
    let name = "BUS_TEST_PLACEMENT_PROBE";
    let result = async {
        let created: serde_json::Value = js
            .request(
                format!("STREAM.CREATE.{name}"),
                &serde_json::json!({
                    "name": name,
                    "subjects": ["_bus_test.placement_probe"],
                    "storage": "memory",
                    "num_replicas": replicas,
                }),
            )
            .await
            .map_err(|e| e.to_string())?;
        if let Some(e) = created.get("error") {
            return Err(e.to_string());
        }
        let _ = js
            .request::<_, _, serde_json::Value>(
                format!("STREAM.DELETE.{name}"),
                &serde_json::json!({}),
            )
            .await;
        Ok(())
    }
    .await;
    let _ = client.drain().await;
    result
}

/// A JetStream cluster of `nats-server`s on loopback; each node is a [`NatsServer`].
#[derive(Debug)]
pub struct NatsCluster {
    nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `n` nodes (at least 3 for R3 streams) named `n0`, `n1`, ... and waits until
    /// JetStream answers on every node and the cluster can place a stream replicated on all of
    /// them (up to 5).
    pub async fn start(n: usize) -> NatsCluster {
        let client_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let route_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let routes: String = route_ports
            .iter()
            .map(|p| format!("nats-route://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            let dir = tempfile::Builder::new()
                .prefix("bus-nats-cluster-")
                .tempdir()
                .expect("creating a temporary directory");
            let store = dir.path().join("store");
            let mut conf = String::new();
            let _ = write!(
                conf,
                "server_name: n{i}\nlisten: 127.0.0.1:{}\n\
                 cluster {{ name: bus-test, listen: 127.0.0.1:{}, routes: [{routes}] }}\n",
                client_ports[i], route_ports[i],
            );
            let path = dir.path().join("server.conf");
            std::fs::write(&path, conf).expect("writing the node config");
            let node = NatsServer {
                child: None,
                port: client_ports[i],
                store,
                log: dir.path().join("server.log"),
                args: vec!["-js".into(), "-c".into(), path.display().to_string()],
                ready_probe: Probe {
                    user: None,
                    token: None,
                    port_only: true,
                },
                _dir: dir,
            };
            nodes.push(node);
        }
        // Start all before waiting: a node's JetStream needs the others for a quorum.
        for node in &mut nodes {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&node.log)
                .expect("opening the node log");
            let log2 = log.try_clone().expect("cloning the log handle");
            let mut cmd = node.command();
            cmd.stdout(Stdio::from(log)).stderr(Stdio::from(log2));
            node.child = Some(cmd.spawn().unwrap_or_else(|e| {
                panic!(
                    "cannot run nats-server: {e}: install it with `apt-get install -y nats-server`"
                )
            }));
        }
        let mut cluster = NatsCluster { nodes };
        cluster.wait_ready().await;
        cluster
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let probe = Probe {
            user: None,
            token: None,
            port_only: false,
        };
        'nodes: for node in &mut self.nodes {
            while Instant::now() < deadline {
                if !node.is_running() {
                    panic!(
                        "cluster node on port {} exited:\n{}",
                        node.port,
                        node.log_tail()
                    );
                }
                if jetstream_ready(&node.url(), &probe).await {
                    continue 'nodes;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!(
                "cluster node on port {} not ready:\n{}",
                node.port,
                node.log_tail()
            );
        }
        // Answering requests only means a meta leader exists. Placing a replicated stream also
        // needs the leader to have heard from enough peers, which takes a moment longer; until
        // then stream creation fails with "no suitable peers for placement". Probe exactly that.
        let replicas = self.nodes.len().min(5);
        let url = self.nodes[0].url();
        loop {
            match place_probe_stream(&url, replicas).await {
                Ok(()) => return,
                Err(e) if Instant::now() >= deadline => panic!(
                    "cluster cannot place an R{replicas} stream after {READY_TIMEOUT:?}: {e}\n{}",
                    self.nodes[0].log_tail()
                ),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// Waits until the running nodes have a JetStream metadata leader again, e.g. after
    /// stopping or killing a node that may have been leading. Until then the cluster drops
    /// JetStream API requests without an answer (a graceful stop usually hands the leadership
    /// over within milliseconds; when it does not, or after a kill, the election takes 4 to 9 s
    /// or more on nats-server 2.9).
    ///
    /// # Panics
    ///
    /// When no leader answers within 30 s, with the log of a running node.
    pub async fn wait_meta_leader(&mut self) {
        let probe = Probe {
            user: None,
            token: None,
            port_only: false,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            // Account info is answered by the metadata leader only, whichever node relays it.
            let running = (0..self.nodes.len()).find(|&i| self.nodes[i].is_running());
            let node = &self.nodes[running.expect("no cluster node is running")];
            if jetstream_ready(&node.url(), &probe).await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no JetStream metadata leader after {READY_TIMEOUT:?}:\n{}",
                node.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The client URLs of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(NatsServer::url).collect()
    }

    /// Node `i`.
    pub fn node(&mut self, i: usize) -> &mut NatsServer {
        &mut self.nodes[i]
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// A JetStream bus configuration with every node's URL, `replicas` replicas of both
    /// streams and the CQC conventions ([`EventBusConfig::cqc`]).
    pub fn bus_config(&self, replicas: usize) -> EventBusConfig {
        let mut c = EventBusConfig::jetstream(self.urls()).with_cqc_conventions();
        c.stream.replicas = replicas;
        c.dead_letter.replicas = replicas;
        c
    }

    /// The index of the node leading `stream`, asked of any running node.
    pub async fn stream_leader(&mut self, stream: &str) -> Option<usize> {
        let urls: Vec<String> = self
            .nodes
            .iter_mut()
            .filter_map(|n| n.is_running().then(|| n.url()))
            .collect();
        for url in urls {
            let Ok(client) = async_nats::ConnectOptions::new()
                .connection_timeout(Duration::from_secs(2))
                .connect(url.as_str())
                .await
            else {
                continue;
            };
            let js = async_nats::jetstream::ContextBuilder::new()
                .timeout(Duration::from_secs(3))
                .build(client.clone());
            let info = js
                .request::<_, _, serde_json::Value>(
                    format!("STREAM.INFO.{stream}"),
                    &serde_json::json!({}),
                )
                .await;
            let _ = client.drain().await;
            if let Ok(v) = info
                && let Some(leader) = v.pointer("/cluster/leader").and_then(|l| l.as_str())
                && let Some(i) = leader.strip_prefix('n').and_then(|n| n.parse().ok())
            {
                return Some(i);
            }
        }
        None
    }
}
