//! The shutdown signal, in the style of mini-redis: one sender, any number of
//! listeners, each of which can ask "has shutdown begun?" or wait for it.

use tokio::sync::watch;

/// Fires shutdown for every [`ShutdownSignal`] made from it.
#[derive(Debug)]
pub struct ShutdownTrigger {
    tx: watch::Sender<bool>,
}

#[derive(Clone, Debug)]
pub struct ShutdownSignal {
    rx: watch::Receiver<bool>,
}

impl ShutdownTrigger {
    pub fn new() -> (ShutdownTrigger, ShutdownSignal) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger { tx }, ShutdownSignal { rx })
    }

    pub fn trigger(&self) {
        let _ = self.tx.send(true);
    }

    pub fn signal(&self) -> ShutdownSignal {
        ShutdownSignal {
            rx: self.tx.subscribe(),
        }
    }
}

impl ShutdownSignal {
    /// A signal that never fires (for tools and tests).
    pub fn never() -> ShutdownSignal {
        let (tx, rx) = watch::channel(false);
        std::mem::forget(tx);
        ShutdownSignal { rx }
    }

    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// Waits until shutdown is triggered (or its trigger is dropped).
    pub async fn recv(&mut self) {
        let _ = self.rx.wait_for(|v| *v).await;
    }
}
