//! A sink's input that outlives the sink: a reload that changes a sink but not its
//! buffer hands the buffer, with everything in it, to the replacement.
//!
//! [`Relay::successor`] gives an input over the same buffer that waits;
//! [`Relay::switch`] ends the current reader's input (its next `recv` returns
//! `None`, as if every upstream had finished, so the sink delivers what it holds and
//! returns) and lets the successor read on. The producers never see a gap: they
//! keep writing into the buffer while the sinks change over.

use std::sync::Arc;

use tokio::sync::{watch, Mutex};

use super::ends::{BoxFuture, BufferReader, Input};
use crate::event::Event;

type Shared = Arc<Mutex<Box<dyn BufferReader>>>;

/// The topology's hold on one sink's buffer.
pub struct Relay {
    reader: Shared,
    /// Whose turn it is to read: each input has a number, and reads while it is the
    /// turn; a later turn ends it.
    turn: watch::Sender<u64>,
}

impl Relay {
    /// Wraps `input`: the returned input is what the sink reads.
    pub fn wrap(input: Input) -> (Relay, Input) {
        let relay = Relay {
            reader: Arc::new(Mutex::new(input.into_reader())),
            turn: watch::channel(0).0,
        };
        let first = relay.input(0);
        (relay, first)
    }

    /// The input of the sink that will replace the current reader: it reads nothing
    /// until [`switch`](Self::switch), so it can be built (and dropped, should
    /// building fail) while the current reader goes on.
    pub fn successor(&self) -> Input {
        self.input(*self.turn.borrow() + 1)
    }

    /// Ends the current reader's input; the successor reads on from where it stopped.
    pub fn switch(&self) {
        self.turn.send_modify(|t| *t += 1);
    }

    fn input(&self, mine: u64) -> Input {
        Input::new(Reader {
            reader: self.reader.clone(),
            turn: self.turn.subscribe(),
            mine,
        })
    }
}

struct Reader {
    reader: Shared,
    turn: watch::Receiver<u64>,
    mine: u64,
}

impl Reader {
    /// Completes once the turn is at least `at` (never, if the relay is gone first).
    async fn turn_reaches(turn: &mut watch::Receiver<u64>, at: u64) {
        if turn.wait_for(|t| *t >= at).await.is_err() && *turn.borrow() < at {
            std::future::pending::<()>().await;
        }
    }
}

impl BufferReader for Reader {
    fn recv(&mut self) -> BoxFuture<'_, Option<Event>> {
        Box::pin(async move {
            let mine = self.mine;
            Reader::turn_reaches(&mut self.turn, mine).await;
            let mut over = self.turn.clone();
            // Both buffer kinds' `recv` are cancel-safe: an event is taken only
            // when the future completes, so giving up at a switch loses nothing.
            tokio::select! {
                biased;
                _ = Reader::turn_reaches(&mut over, mine + 1) => None,
                event = async { self.reader.lock().await.recv().await } => event,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::{edge, BufferConfig, MemoryBudget};
    use crate::event::Watermark;
    use crate::telemetry::Telemetry;

    fn mark(n: u64) -> Event {
        Event::Watermark(Watermark {
            source: "s".into(),
            complete_until_ms: n,
        })
    }

    #[tokio::test]
    async fn the_successor_reads_on_where_the_first_reader_stopped() {
        let metrics = Telemetry::new().component("k", "sink", "test");
        let (tx, rx) = edge(BufferConfig::default(), MemoryBudget::new(1 << 20), metrics);
        let (relay, mut first) = Relay::wrap(rx);
        for n in 1..=3 {
            tx.send(mark(n)).await.unwrap();
        }
        assert_eq!(first.recv().await, Some(mark(1)));
        let mut second = relay.successor();
        let early = tokio::time::timeout(std::time::Duration::from_millis(20), second.recv());
        assert!(
            early.await.is_err(),
            "a successor reads nothing before the switch"
        );
        assert_eq!(first.recv().await, Some(mark(2)));
        relay.switch();
        assert_eq!(
            first.recv().await,
            None,
            "the first reader's input has ended"
        );
        assert_eq!(second.recv().await, Some(mark(3)));
        // A reader waiting on an empty buffer is released too; a successor
        // dropped unused changes nothing.
        drop(relay.successor());
        let waiting = tokio::spawn(async move { second.recv().await });
        let mut third = relay.successor();
        relay.switch();
        assert_eq!(waiting.await.unwrap(), None);
        tx.send(mark(4)).await.unwrap();
        drop(tx);
        assert_eq!(third.recv().await, Some(mark(4)));
        assert_eq!(third.recv().await, None, "every writer gone: the end");
    }
}
