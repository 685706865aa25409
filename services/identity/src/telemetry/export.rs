//! A batch span processor with a bounded queue that counts what it drops.
//!
//! Spans are handed over with a non-blocking `try_send`: when the queue is
//! full — a slow or dead collector — the span is dropped and counted, and
//! the RPC that made it never waits. A worker task exports batches with a
//! timeout.

use super::metrics::metrics;
use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::mpsc;

#[derive(Debug, Clone)]
pub struct BatchSettings {
    pub max_queue: usize,
    pub max_batch: usize,
    pub delay: Duration,
    pub export_timeout: Duration,
}

impl BatchSettings {
    /// The standard `OTEL_BSP_*` variables, with their spec defaults.
    pub fn from_env() -> Self {
        let number = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(default)
        };
        BatchSettings {
            max_queue: number("OTEL_BSP_MAX_QUEUE_SIZE", 2048) as usize,
            max_batch: number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512).max(1) as usize,
            delay: Duration::from_millis(number("OTEL_BSP_SCHEDULE_DELAY", 5000)),
            export_timeout: Duration::from_millis(number("OTEL_BSP_EXPORT_TIMEOUT", 30000)),
        }
    }
}

enum Message {
    Span(Box<SpanData>),
    Flush(std::sync::mpsc::Sender<()>),
}

#[derive(Debug)]
pub struct BoundedBatchProcessor<E: SpanExporter + 'static> {
    exporter: Mutex<Option<E>>,
    settings: BatchSettings,
    runtime: tokio::runtime::Handle,
    queue: OnceLock<mpsc::Sender<Message>>,
}

impl<E: SpanExporter + 'static> BoundedBatchProcessor<E> {
    /// Call inside the Tokio runtime that will run the export worker.
    pub fn new(exporter: E, settings: BatchSettings) -> Self {
        BoundedBatchProcessor {
            exporter: Mutex::new(Some(exporter)),
            settings,
            runtime: tokio::runtime::Handle::current(),
            queue: OnceLock::new(),
        }
    }

    fn queue(&self) -> Option<&mpsc::Sender<Message>> {
        if let Some(queue) = self.queue.get() {
            return Some(queue);
        }
        let exporter = self.exporter.lock().ok()?.take()?;
        let (tx, rx) = mpsc::channel(self.settings.max_queue.max(1));
        self.runtime
            .spawn(worker(exporter, rx, self.settings.clone()));
        let _ = self.queue.set(tx);
        self.queue.get()
    }
}

async fn export<E: SpanExporter>(exporter: &E, batch: &mut Vec<SpanData>, timeout: Duration) {
    if batch.is_empty() {
        return;
    }
    let spans = std::mem::take(batch);
    let count = spans.len() as u64;
    match tokio::time::timeout(timeout, exporter.export(spans)).await {
        Ok(Ok(())) => {
            metrics().spans_exported.inc_by(count);
        }
        _ => {
            metrics().spans_dropped.inc_by(count);
        }
    }
}

async fn worker<E: SpanExporter>(
    exporter: E,
    mut rx: mpsc::Receiver<Message>,
    settings: BatchSettings,
) {
    let mut batch = Vec::with_capacity(settings.max_batch);
    let mut tick = tokio::time::interval(settings.delay.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            message = rx.recv() => match message {
                Some(Message::Span(span)) => {
                    batch.push(*span);
                    if batch.len() >= settings.max_batch {
                        export(&exporter, &mut batch, settings.export_timeout).await;
                    }
                }
                Some(Message::Flush(done)) => {
                    export(&exporter, &mut batch, settings.export_timeout).await;
                    let _ = done.send(());
                }
                None => {
                    export(&exporter, &mut batch, settings.export_timeout).await;
                    return;
                }
            },
            _ = tick.tick() => export(&exporter, &mut batch, settings.export_timeout).await,
        }
    }
}

impl<E: SpanExporter + 'static> SpanProcessor for BoundedBatchProcessor<E> {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        let Some(queue) = self.queue() else { return };
        if queue.try_send(Message::Span(Box::new(span))).is_err() {
            metrics().spans_dropped.inc();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.flush(self.settings.export_timeout)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.flush(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        if let Ok(mut exporter) = self.exporter.lock()
            && let Some(exporter) = exporter.as_mut()
        {
            exporter.set_resource(resource);
        }
    }
}

impl<E: SpanExporter + 'static> BoundedBatchProcessor<E> {
    /// Blocks the calling thread until the queue is exported (call it off
    /// the async workers, e.g. in `spawn_blocking`).
    fn flush(&self, timeout: Duration) -> OTelSdkResult {
        let Some(queue) = self.queue.get() else {
            return Ok(());
        };
        let (done, wait) = std::sync::mpsc::channel();
        queue
            .try_send(Message::Flush(done))
            .map_err(|_| OTelSdkError::InternalFailure("span queue full".into()))?;
        wait.recv_timeout(timeout)
            .map_err(|_| OTelSdkError::Timeout(timeout))
    }
}
