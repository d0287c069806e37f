//! The queue that feeds a database thread (the writer, or the readers): jobs, and a
//! request to stop once the jobs before it are done.

use tokio::sync::mpsc;

/// What a database thread takes off its queue.
pub(super) enum Msg<J> {
    Job(J),
    Stop,
}

/// Waits for the next job, then takes the jobs already queued behind it, up to `max` in
/// `batch`. `None` when the thread should stop now (asked to, or every sender is gone);
/// `Some(true)` when it should stop after running this batch.
pub(super) fn next_batch<J>(
    rx: &mut mpsc::Receiver<Msg<J>>,
    batch: &mut Vec<J>,
    max: usize,
) -> Option<bool> {
    match rx.blocking_recv() {
        Some(Msg::Job(job)) => batch.push(job),
        Some(Msg::Stop) | None => return None,
    }
    while batch.len() < max {
        match rx.try_recv() {
            Ok(Msg::Job(job)) => batch.push(job),
            Ok(Msg::Stop) => return Some(true),
            Err(_) => break,
        }
    }
    Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_takes_what_is_queued_up_to_its_limit_and_notices_a_stop() {
        let (tx, mut rx) = mpsc::channel(16);
        for n in 0..5 {
            tx.try_send(Msg::Job(n)).unwrap_or_else(|_| panic!("room"));
        }
        tx.try_send(Msg::Stop).unwrap_or_else(|_| panic!("room"));
        let mut batch = Vec::new();
        assert_eq!(next_batch(&mut rx, &mut batch, 3), Some(false));
        assert_eq!(batch, [0, 1, 2]);
        batch.clear();
        assert_eq!(
            next_batch(&mut rx, &mut batch, 3),
            Some(true),
            "stop after 3 and 4"
        );
        assert_eq!(batch, [3, 4]);

        tx.try_send(Msg::Stop).unwrap_or_else(|_| panic!("room"));
        assert_eq!(next_batch(&mut rx, &mut Vec::new(), 3), None);
        drop(tx);
        assert_eq!(
            next_batch(&mut rx, &mut Vec::new(), 3),
            None,
            "senders gone"
        );
    }
}
