//! Group commit of the audit trail: requests hand their AuditEvent to a few writer tasks,
//! each of which inserts whatever is waiting in one statement and one commit, then tells
//! every waiting request that its event is durable.
//!
//! One commit per read would make every read wait for its own WAL flush; under load the
//! flush is shared by all the events of a batch instead. A request is answered only after
//! the commit that holds its event, so nothing is released unaudited.

use tokio::sync::{Mutex, mpsc, oneshot};

use super::event::AuditRecord;
use crate::error::{ApiError, ApiResult};
use crate::store::{self, Pool};

/// The queue bound: past it, requests wait to enqueue, which slows them rather than
/// growing memory without limit.
const QUEUE_PER_WRITER: usize = 1024;

struct Pending {
    record: AuditRecord,
    recorded: oneshot::Sender<ApiResult<()>>,
}

/// The sending side, shared by all HTTP workers.
pub struct AuditWriter {
    queue: mpsc::Sender<Pending>,
}

impl AuditWriter {
    /// Starts `writers` tasks on the current runtime, each inserting at most `batch_max`
    /// events per statement on connections of `pool`.
    pub fn start(pool: Pool, writers: usize, batch_max: usize) -> Self {
        let writers = writers.max(1);
        let (queue, receiver) = mpsc::channel(QUEUE_PER_WRITER * writers);
        let receiver = std::sync::Arc::new(Mutex::new(receiver));
        for _ in 0..writers {
            tokio::spawn(write_batches(
                pool.clone(),
                receiver.clone(),
                batch_max.max(1),
            ));
        }
        AuditWriter { queue }
    }

    /// Records `record`; `Ok` once it is committed. A failure is always a 503 (`Unavailable`
    /// or `Timeout`), fit to answer the request with.
    pub async fn record(&self, record: AuditRecord) -> ApiResult<()> {
        let (recorded, done) = oneshot::channel();
        self.queue
            .send(Pending { record, recorded })
            .await
            .map_err(|_| stopped())?;
        done.await.map_err(|_| stopped())?
    }
}

fn stopped() -> ApiError {
    ApiError::Unavailable("The audit trail is not accepting events (shutting down)".into())
}

/// One writer: takes the next event, and with it every event already queued up to
/// `batch_max`, writes them together, answers each. Ends when every sender is gone.
async fn write_batches(
    pool: Pool,
    receiver: std::sync::Arc<Mutex<mpsc::Receiver<Pending>>>,
    batch_max: usize,
) {
    let mut batch = Vec::with_capacity(batch_max);
    loop {
        {
            let mut receiver = receiver.lock().await;
            if receiver.recv_many(&mut batch, batch_max).await == 0 {
                return;
            }
        }
        let records: Vec<&AuditRecord> = batch.iter().map(|pending| &pending.record).collect();
        let result = store::audit::append_all(&pool, &records).await;
        for pending in batch.drain(..) {
            // A request that gave up waiting (its deadline passed) has no one to tell.
            let _ = pending
                .recorded
                .send(result.as_ref().map(|_| ()).map_err(shared));
        }
    }
}

/// The batch's one failure, for each of its requests: a database outage keeps its own
/// message, anything else is a generic refusal.
fn shared(error: &ApiError) -> ApiError {
    match error {
        ApiError::Unavailable(message) => ApiError::Unavailable(message.clone()),
        ApiError::Timeout(message) => ApiError::Timeout(message.clone()),
        _ => ApiError::Unavailable("The audit trail cannot be written; retry shortly".into()),
    }
}
