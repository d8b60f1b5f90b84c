//! A librdkafka producer with a thread of its own serving its delivery reports, woken by
//! librdkafka when one arrives. rdkafka's `ThreadedProducer` waits in rounds of 100 ms whose
//! last fraction of a millisecond rounds down to a wait of zero and spins: about 1% of a core
//! for an output with nothing to send.

use super::reports::Reports;
use rdkafka::bindings as rd;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaResult;
use rdkafka::producer::{BaseProducer, Producer};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How long the thread sleeps without a wake-up while messages wait for their reports, and
/// when none do: a bound, should a wake-up be missed, not the pace of the reports.
const WAIT_IN_FLIGHT_MS: libc::c_int = 10;
const WAIT_IDLE_MS: libc::c_int = 1000;

pub(super) struct PolledProducer {
    producer: Arc<BaseProducer<Reports>>,
    stop: Arc<AtomicBool>,
    wake: Arc<OwnedFd>,
    thread: Option<JoinHandle<()>>,
}

/// The producer's main queue (where its reports go), as a handle of our own.
struct MainQueue(*mut rd::rd_kafka_queue_t);

// SAFETY: librdkafka's queue handles may be used from any thread.
unsafe impl Send for MainQueue {}

impl PolledProducer {
    pub(super) fn create(config: &ClientConfig, reports: Reports) -> KafkaResult<PolledProducer> {
        let producer: Arc<BaseProducer<Reports>> = Arc::new(config.create_with_context(reports)?);
        // SAFETY: eventfd takes no pointer; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(rdkafka::error::KafkaError::ClientCreation(format!(
                "eventfd: {}",
                std::io::Error::last_os_error()
            )));
        }
        // SAFETY: `fd` was just made and is owned by nothing else.
        let wake = Arc::new(unsafe { OwnedFd::from_raw_fd(fd) });
        // SAFETY: the client is alive (the thread holds the producer until it has destroyed
        // this handle). librdkafka writes `ONE` to the eventfd when a report lands in an empty
        // queue; the payload is copied.
        let queue = unsafe {
            let q = rd::rd_kafka_queue_get_main(producer.client().native_ptr());
            rd::rd_kafka_queue_io_event_enable(q, fd, ONE.as_ptr().cast(), ONE.len());
            MainQueue(q)
        };
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (producer, stop, wake) = (producer.clone(), stop.clone(), wake.clone());
            std::thread::Builder::new()
                .name("trawl-kafka-reports".into())
                .spawn(move || serve(&producer, queue, &wake, &stop))
                .map_err(|e| {
                    rdkafka::error::KafkaError::ClientCreation(format!("reports thread: {e}"))
                })?
        };
        Ok(PolledProducer {
            producer,
            stop,
            wake,
            thread: Some(thread),
        })
    }
}

/// An eventfd's increment of one.
const ONE: [u8; 8] = 1u64.to_ne_bytes();

/// Serves the reports queued, then sleeps until librdkafka writes to `wake` (or the bound),
/// until `stop`.
fn serve(producer: &BaseProducer<Reports>, queue: MainQueue, wake: &OwnedFd, stop: &AtomicBool) {
    // SAFETY (for each call on `queue.0`): the handle stays valid until destroyed at the end.
    let queued = || unsafe { rd::rd_kafka_queue_length(queue.0) };
    loop {
        // One report (or log, or statistics) each; a queue that stops shrinking holds what a
        // zero wait does not serve, and is left to the next round.
        let mut left = queued();
        while left > 0 {
            producer.poll(Duration::ZERO);
            let now = queued();
            if now >= left {
                break;
            }
            left = now;
        }
        if stop.load(Ordering::Acquire) {
            break;
        }
        let wait = if producer.in_flight_count() > 0 {
            WAIT_IN_FLIGHT_MS
        } else {
            WAIT_IDLE_MS
        };
        let mut pfd = libc::pollfd {
            fd: wake.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd; the read is into a buffer of the eventfd's size.
        unsafe {
            if libc::poll(&mut pfd, 1, wait) > 0 {
                let mut count = [0u8; 8];
                libc::read(wake.as_raw_fd(), count.as_mut_ptr().cast(), count.len());
            }
        }
    }
    // SAFETY: no more writes to the eventfd once disabled; the handle is released once.
    unsafe {
        rd::rd_kafka_queue_io_event_enable(queue.0, -1, std::ptr::null(), 0);
        rd::rd_kafka_queue_destroy(queue.0);
    }
}

impl std::ops::Deref for PolledProducer {
    type Target = BaseProducer<Reports>;

    fn deref(&self) -> &BaseProducer<Reports> {
        &self.producer
    }
}

impl Drop for PolledProducer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // SAFETY: an eventfd write of its 8-byte size.
        unsafe {
            libc::write(self.wake.as_raw_fd(), ONE.as_ptr().cast(), ONE.len());
        }
        if let Some(t) = self.thread.take() {
            // Dropped by its own thread (from a report), it cannot wait for itself: it ends
            // on its own once this returns.
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}
