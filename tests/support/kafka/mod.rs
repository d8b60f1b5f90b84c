//! A real Apache Kafka broker for tests: KRaft (broker and controller in one JVM) from the jars
//! `scripts/systems/kafka.sh` fetched, on free ports, its log dir in a tempdir that outlives
//! `stop`/`start_again`; alone, or one of a `Cluster` (cluster.rs). Listeners: PLAINTEXT (behind a
//! proxy that `cut` closes, for `start`), SASL_PLAINTEXT (PLAIN) and SSL; messages are read back
//! through a consumer group.
#![allow(dead_code)]

mod cluster;
mod proxy;
mod read;
pub mod steady;

// Test binaries that use only one of them would warn about the other.
#[allow(unused_imports)]
pub use {cluster::Cluster, read::Record};

use proxy::Proxy;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The user the SASL_PLAINTEXT listener knows (mechanism PLAIN).
pub const SASL_USER: &str = "trawl";
pub const SASL_PASSWORD: &str = "trawl-secret";

/// Any 16 bytes in Kafka's base64 form: every test broker (or `Cluster`) is a cluster of its own.
const CLUSTER_ID: &str = "q1Sh-9_ISia_zwGINzRvyQ";

/// A small heap is enough for the tests' traffic once the log cleaner's 128 MiB dedupe buffer
/// is shrunk (see `properties`); C1 only and the serial collector start faster on 2 busy cores.
const JVM_OPTIONS: &[&str] = &[
    "-Xmx256m",
    "-Xms32m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:-UsePerfData",
    "-Djava.awt.headless=true",
];

/// Where `scripts/systems/kafka.sh` put Apache Kafka's jars.
fn kafka_lib() -> PathBuf {
    let base = std::env::var_os("TRAWL_SYSTEMS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/trawl-systems"));
    let lib = base.join("kafka/lib");
    let has_broker = std::fs::read_dir(&lib).is_ok_and(|d| {
        d.flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("kafka_2.13-"))
    });
    if !has_broker {
        panic!(
            "Apache Kafka is not in {}: run scripts/setup.sh (scripts/systems/kafka.sh fetches it \
             from Maven Central; TRAWL_SYSTEMS_DIR sets where)",
            lib.display()
        );
    }
    lib
}

/// A Kafka broker: plain clients use `bootstrap`, SASL/PLAIN ones `sasl_bootstrap`
/// (`SASL_USER`/`SASL_PASSWORD`), TLS ones `tls_bootstrap` trusting `ca_file`.
pub struct Broker {
    child: Option<Child>,
    /// server.properties, the log dir `data/`, the broker's own log `server.log`, certificates.
    dir: tempfile::TempDir,
    pub bootstrap: String,
    pub sasl_bootstrap: String,
    pub tls_bootstrap: String,
    /// The CA that signed the SSL listener's certificate (for 127.0.0.1).
    pub ca_file: PathBuf,
    proxy: Option<Proxy>,
    /// How long the last (re)start took until the broker answered metadata requests.
    pub started_in: Duration,
    /// Its place in its cluster: what admin and consumer clients bootstrap from, and how many
    /// replicas a topic gets.
    member: Member,
}

/// A broker's place in its KRaft cluster: alone (node 1, the only voter) or one of a `Cluster`.
#[derive(Clone)]
struct Member {
    node_id: usize,
    /// `controller.quorum.voters`: `id@127.0.0.1:port` of every controller.
    voters: String,
    /// The plain listeners of every broker of the cluster (comma-separated).
    cluster_bootstrap: String,
    /// Brokers in the cluster: the replication factor of created topics and internal topics.
    size: usize,
}

impl Member {
    fn alone(ports: &Ports) -> Member {
        Member {
            node_id: 1,
            voters: format!("1@127.0.0.1:{}", ports.controller),
            cluster_bootstrap: format!("127.0.0.1:{}", ports.advertised_client),
            size: 1,
        }
    }
}

/// The ports of one broker's listeners.
#[derive(Clone, Copy)]
struct Ports {
    controller: u16,
    internal: u16,
    client: u16,
    /// What clients of `client` are told to connect to: the proxy's port, or `client`.
    advertised_client: u16,
    sasl: u16,
    tls: u16,
}

impl Ports {
    fn free(proxied: bool) -> Ports {
        Ports::from(super::process::server_ports::<6>(), proxied)
    }

    /// Six free ports (all different) as one broker's listeners.
    fn from(free: [u16; 6], proxied: bool) -> Ports {
        let [controller, internal, client, proxy, sasl, tls] = free;
        Ports {
            controller,
            internal,
            client,
            advertised_client: if proxied { proxy } else { client },
            sasl,
            tls,
        }
    }
}

impl Broker {
    /// A broker whose plain listener is reached through a proxy that `cut` closes.
    pub fn start() -> Broker {
        Broker::launch(true, false, "")
    }

    /// `start` with more `server.properties` lines (`key=value`, one a line).
    pub fn start_with(properties: &str) -> Broker {
        Broker::launch(true, false, properties)
    }

    /// A broker that checks ACLs (Kafka's StandardAuthorizer): topics without ACLs stay open to
    /// everyone, plain clients are super users, and `allow` narrows what the SASL user may do.
    pub fn start_with_acls() -> Broker {
        Broker::launch(false, true, "")
    }

    /// A broker that clients reach directly. Every broker keeps its log on disk, so `stop`
    /// and `start_again` (or `kill` and `start_again`) lose nothing it acknowledged.
    pub fn start_persistent() -> Broker {
        Broker::launch(false, false, "")
    }

    /// One broker for all the tests of a test binary that neither stop nor cut it (each uses
    /// its own topics): Kafka's start-up is paid once. Killed, and its files removed, when the
    /// test binary exits.
    pub fn shared() -> &'static Broker {
        static SHARED: OnceLock<Broker> = OnceLock::new();
        extern "C" fn remove_shared() {
            if let Some(b) = SHARED.get() {
                b.report_peak();
                if let Some(c) = &b.child {
                    // SAFETY: kill(2) and waitpid(2) on our own child's pid, not yet reaped.
                    unsafe {
                        libc::kill(c.id() as libc::pid_t, libc::SIGKILL);
                        libc::waitpid(c.id() as libc::pid_t, std::ptr::null_mut(), 0);
                    }
                }
                let _ = std::fs::remove_dir_all(b.dir.path());
            }
        }
        SHARED.get_or_init(|| {
            let b = Broker::start_persistent();
            // SAFETY: registers a plain function run by exit(3); it only reads the set static.
            unsafe { libc::atexit(remove_shared) };
            b
        })
    }

    fn launch(proxied: bool, acls: bool, extra: &str) -> Broker {
        let ports = Ports::free(proxied);
        let mut b = Broker::prepare(ports, Member::alone(&ports), proxied, acls, extra);
        b.start_again();
        b
    }

    /// A broker ready to start: its files written and its log dir formatted, not running.
    fn prepare(ports: Ports, member: Member, proxied: bool, acls: bool, extra: &str) -> Broker {
        let lib = kafka_lib();
        let dir = tempfile::Builder::new()
            .prefix("trawl-kafka-")
            .tempdir()
            .expect("a temporary directory for Kafka");
        let tls_dir = dir.path().join("tls");
        std::fs::create_dir_all(&tls_dir).expect("tls directory");
        let (ca_file, cert, key) = super::process::make_certificates(&tls_dir);
        // Kafka's PEM key store: the private key and the certificate chain in one file.
        let keystore = tls_dir.join("keystore.pem");
        let pem = [read(&key), read(&cert)].concat();
        std::fs::write(&keystore, pem).expect("writing the key store");
        std::fs::write(
            dir.path().join("server.properties"),
            properties(dir.path(), &ports, &member, &keystore)
                + if acls { AUTHORIZER } else { "" }
                + extra,
        )
        .expect("writing server.properties");
        std::fs::write(dir.path().join("log4j2.properties"), log_config(dir.path()))
            .expect("writing log4j2.properties");

        let formatting = Instant::now();
        let out = java(&lib, dir.path())
            .args(["kafka.tools.StorageTool", "format", "-t", CLUSTER_ID, "-c"])
            .arg("server.properties")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .expect("running java (Java 17 or later; run scripts/setup.sh)");
        assert!(
            out.status.success(),
            "formatting Kafka's log dir failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "Apache Kafka: log dir formatted in {:.1} s",
            formatting.elapsed().as_secs_f64()
        );

        let proxy = proxied.then(|| Proxy::start(ports.advertised_client, ports.client));
        Broker {
            child: None,
            dir,
            bootstrap: format!("127.0.0.1:{}", ports.advertised_client),
            sasl_bootstrap: format!("127.0.0.1:{}", ports.sasl),
            tls_bootstrap: format!("127.0.0.1:{}", ports.tls),
            ca_file,
            proxy,
            started_in: Duration::ZERO,
            member,
        }
    }

    /// Stops the broker as an operator would (SIGTERM: a controlled shutdown), killing it
    /// after 60 s.
    pub fn stop(&mut self) {
        self.report_peak();
        let Some(mut c) = self.child.take() else {
            return;
        };
        // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
        unsafe {
            libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
    }

    /// Whether the broker process this handle started is running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kills the broker (SIGKILL: no controlled shutdown; what the JVM wrote is in the page
    /// cache, so the log survives as it would a crashed process, not a crashed machine).
    pub fn kill(&mut self) {
        self.report_peak();
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `signal` to the broker's JVM: SIGSTOP hangs it (connections stay open, nothing is
    /// answered, as a broker in a long GC pause or on a frozen VM), SIGCONT wakes it.
    pub fn signal(&self, signal: libc::c_int) {
        let c = self.child.as_ref().expect("a running broker");
        // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
        unsafe {
            libc::kill(c.id() as libc::pid_t, signal);
        }
    }

    /// Starts the broker (again) on the same ports with the same log dir and waits until it
    /// answers metadata requests.
    pub fn start_again(&mut self) {
        let started = Instant::now();
        if !self.spawn() {
            return;
        }
        if let Err(e) = self.wait_ready(Duration::from_secs(120)) {
            panic!("{e}");
        }
        self.started_in = started.elapsed();
        eprintln!(
            "Apache Kafka on {} answered {:.1} s after its start, RSS {} MiB",
            self.bootstrap,
            self.started_in.as_secs_f64(),
            self.memory_kib("VmRSS").unwrap_or(0) / 1024
        );
    }

    /// Starts the broker's JVM unless it runs already (then false).
    fn spawn(&mut self) -> bool {
        if let Some(c) = self.child.as_mut() {
            if let Ok(None) = c.try_wait() {
                // Still running: a second JVM on the same ports and log dir would be answered
                // for by the first while it starts, then die on the log dir's lock, leaving no
                // broker this handle knows (the Kafka campaign's overlapping restarts did that).
                return false;
            }
        }
        let lib = kafka_lib();
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.out"))
            .expect("server.out");
        let mut cmd = java(&lib, self.dir.path());
        cmd.args(["kafka.Kafka", "server.properties"])
            .stdout(out.try_clone().expect("server.out"))
            .stderr(out);
        self.child = Some(spawn_tied(cmd).expect("starting java (run scripts/setup.sh)"));
        true
    }

    /// Waits until the broker itself (not another of its cluster) answers metadata requests
    /// and lists itself among the cluster's brokers; the reason, with its log, when it exits
    /// or does not within `limit`.
    fn wait_ready(&mut self, limit: Duration) -> Result<(), String> {
        let consumer: BaseConsumer = self
            .client_config()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .expect("kafka client");
        let id = self.member.node_id as i32;
        let start = Instant::now();
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    return Err(format!(
                        "Apache Kafka exited with {status} while starting; its log ends:\n{}",
                        self.log_tail(40)
                    ));
                }
            }
            if consumer
                .fetch_metadata(None, Duration::from_secs(1))
                .is_ok_and(|m| m.brokers().iter().any(|b| b.id() == id))
            {
                return Ok(());
            }
            if start.elapsed() > limit {
                return Err(format!(
                    "Apache Kafka did not answer metadata requests within {limit:?}; its log \
                     ends:\n{}",
                    self.log_tail(40)
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last `n` lines of the broker's own log, for failure messages.
    pub fn log_tail(&self, n: usize) -> String {
        let mut text =
            std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        text.push_str(
            &std::fs::read_to_string(self.dir.path().join("server.out")).unwrap_or_default(),
        );
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The broker process's resident memory in KiB, while it runs.
    pub fn rss_kib(&self) -> Option<u64> {
        self.memory_kib("VmRSS")
    }

    /// A memory line of the broker process's /proc status (`VmRSS`, `VmHWM` for the peak).
    fn memory_kib(&self, line: &str) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        s.lines()
            .find(|l| l.strip_prefix(line).is_some_and(|r| r.starts_with(':')))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    }

    fn report_peak(&self) {
        if let Some(k) = self.memory_kib("VmHWM") {
            eprintln!(
                "Apache Kafka on {}: peak RSS {} MiB",
                self.bootstrap,
                k / 1024
            );
        }
    }

    fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.member.cluster_bootstrap)
            .set("log_level", "3");
        c
    }

    pub fn create_topic(&self, name: &str, partitions: i32) {
        self.create_topic_with(name, partitions, &[]);
    }

    /// `create_topic` with topic settings (`max.message.bytes`...).
    pub fn create_topic_with(&self, name: &str, partitions: i32, settings: &[(&str, &str)]) {
        let admin: AdminClient<DefaultClientContext> =
            self.client_config().create().expect("admin client");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let replicas = TopicReplication::Fixed(self.member.size as i32);
        let mut topic = NewTopic::new(name, partitions, replicas);
        for (key, value) in settings {
            topic = topic.set(key, value);
        }
        let res = rt
            .block_on(admin.create_topics(
                [&topic],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
            ))
            .expect("create_topics");
        for r in res {
            if let Err((t, e)) = r {
                if e != rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists {
                    panic!("creating topic {t}: {e}");
                }
            }
        }
    }

    /// Grants `user` (a SASL user) the ACL `operations` (`Describe`, `Read`, `Write`...) on
    /// `topic`, through Kafka's own Admin client (a Java source file run by `java`); on a broker
    /// from `start_with_acls`, the user may then do only those with that topic.
    pub fn allow(&self, user: &str, topic: &str, operations: &[&str]) {
        let source = self.dir.path().join("AllowAcls.java");
        std::fs::write(&source, ALLOW_ACLS_JAVA).expect("writing AllowAcls.java");
        let out = Command::new("java")
            .arg("-cp")
            .arg(format!("{}/*", kafka_lib().display()))
            .arg(&source)
            .args([self.bootstrap.as_str(), topic, user])
            .args(operations)
            .stdin(Stdio::null())
            .output()
            .expect("running java (a JDK 17: run scripts/setup.sh)");
        assert!(
            out.status.success(),
            "creating ACLs failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Makes the broker unreachable: open connections are closed and new ones refused.
    pub fn cut(&self) {
        self.proxy.as_ref().expect("a broker behind a proxy").cut();
    }

    pub fn restore(&self) {
        self.proxy
            .as_ref()
            .expect("a broker behind a proxy")
            .restore();
    }

    /// The proxy stops passing the broker's answers on (requests still reach the broker), so
    /// that a `cut` after it closes connections with requests surely in flight.
    #[allow(dead_code)]
    pub fn hold_answers(&self) {
        self.proxy
            .as_ref()
            .expect("a broker behind a proxy")
            .hold
            .store(true, Ordering::Relaxed);
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(p) = &self.proxy {
            p.cut();
        }
        self.kill();
    }
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

/// `java` with Kafka's jars on the class path, run in `dir` and logging to `dir/server.log`.
fn java(lib: &Path, dir: &Path) -> Command {
    let mut c = Command::new("java");
    c.arg("-cp")
        .arg(format!("{}/*", lib.display()))
        .args(JVM_OPTIONS)
        .arg(format!(
            "-Dlog4j2.configurationFile={}",
            dir.join("log4j2.properties").display()
        ))
        .current_dir(dir)
        .stdin(Stdio::null());
    c
}

/// Appended to `properties` for `start_with_acls`. The controller and inter-broker listeners are
/// plain (their principal is ANONYMOUS), so ANONYMOUS must be a super user, which makes the plain
/// test clients super users too; only SASL clients are held to ACLs.
const AUTHORIZER: &str =
    "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=true
super.users=User:ANONYMOUS
";

/// `java AllowAcls.java BOOTSTRAP TOPIC USER OPERATION...`: ALLOW ACLs for `User:USER` on the
/// topic, created through the Admin client of the broker's own kafka-clients jar.
const ALLOW_ACLS_JAVA: &str = r#"
import java.util.*;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.common.acl.*;
import org.apache.kafka.common.resource.*;

public class AllowAcls {
    public static void main(String[] a) throws Exception {
        Properties p = new Properties();
        p.put("bootstrap.servers", a[0]);
        List<AclBinding> acls = new ArrayList<>();
        for (int i = 3; i < a.length; i++) {
            acls.add(new AclBinding(
                new ResourcePattern(ResourceType.TOPIC, a[1], PatternType.LITERAL),
                new AccessControlEntry("User:" + a[2], "*", AclOperation.fromString(a[i]),
                    AclPermissionType.ALLOW)));
        }
        try (Admin admin = Admin.create(p)) {
            admin.createAcls(acls).all().get();
        }
    }
}
"#;

/// A KRaft node (broker and controller in one process) with topics created by the tests only:
/// `auto.create.topics.enable=false`, so producing to an unknown topic fails as it does on a
/// production cluster configured that way. Internal topics have a replica on every broker.
fn properties(dir: &Path, p: &Ports, m: &Member, keystore: &Path) -> String {
    format!(
        "process.roles=broker,controller
node.id={node_id}
controller.quorum.voters={voters}
controller.listener.names=CONTROLLER
inter.broker.listener.name=INTERNAL
listeners=CONTROLLER://127.0.0.1:{controller},INTERNAL://127.0.0.1:{internal},CLIENT://127.0.0.1:{client},SASL://127.0.0.1:{sasl},TLS://127.0.0.1:{tls}
advertised.listeners=INTERNAL://127.0.0.1:{internal},CLIENT://127.0.0.1:{advertised},SASL://127.0.0.1:{sasl},TLS://127.0.0.1:{tls}
listener.security.protocol.map=CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT,CLIENT:PLAINTEXT,SASL:SASL_PLAINTEXT,TLS:SSL
sasl.enabled.mechanisms=PLAIN
listener.name.sasl.sasl.enabled.mechanisms=PLAIN
listener.name.sasl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_{user}=\"{password}\";
listener.name.tls.ssl.keystore.type=PEM
listener.name.tls.ssl.keystore.location={keystore}
log.dirs={data}
auto.create.topics.enable=false
num.partitions=1
offsets.topic.replication.factor={size}
offsets.topic.num.partitions=1
transaction.state.log.replication.factor={size}
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor={size}
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.cleaner.dedupe.buffer.size=4194304
",
        node_id = m.node_id,
        voters = m.voters,
        size = m.size,
        controller = p.controller,
        internal = p.internal,
        client = p.client,
        advertised = p.advertised_client,
        sasl = p.sasl,
        tls = p.tls,
        user = SASL_USER,
        password = SASL_PASSWORD,
        keystore = keystore.display(),
        data = dir.join("data").display(),
    )
}

fn log_config(dir: &Path) -> String {
    format!(
        "appender.file.type = File
appender.file.name = file
appender.file.fileName = {}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
",
        dir.join("server.log").display()
    )
}

type SpawnRequest = (Command, mpsc::SyncSender<std::io::Result<Child>>);

/// Spawns `cmd` so that it dies with the test binary, even one killed with SIGKILL: the child
/// asks for SIGKILL when the thread that spawned it ends (PR_SET_PDEATHSIG). Test threads end
/// with their test, so every broker is spawned by one thread that lives as long as the process.
fn spawn_tied(mut cmd: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::SyncSender<SpawnRequest>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::sync_channel::<SpawnRequest>(0);
        std::thread::Builder::new()
            .name("kafka-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("the spawner thread");
        Mutex::new(tx)
    });
    // SAFETY: prctl(2) only, between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (reply, answer) = mpsc::sync_channel(1);
    spawner
        .lock()
        .expect("spawner lock")
        .send((cmd, reply))
        .expect("the spawner thread is gone");
    answer.recv().expect("the spawner thread is gone")
}
