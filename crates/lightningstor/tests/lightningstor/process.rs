//! Servers that die like processes: each runs on its own runtime and thread, and `kill` drops
//! that runtime — every task of it (listeners, connections, requests in flight) stops at once
//! and every socket closes, with no shutdown path run.

use std::future::Future;
use std::net::SocketAddr;

/// A server on its own runtime.
pub struct Process {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Process {
    /// Binds 127.0.0.1:0 and runs `serve(listener)` on a new runtime.
    pub fn spawn<F, Fut>(serve: F) -> Self
    where
        F: FnOnce(tokio::net::TcpListener) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
            rt.spawn(async move { serve(tokio::net::TcpListener::from_std(listener).unwrap()).await });
            let _ = stopped.recv(); // until killed (or dropped)
            rt.shutdown_background();
        });
        Self { addr, stop: Some(stop), thread: Some(thread) }
    }

    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Kills it: the runtime and everything on it go at once.
    pub fn kill(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}
