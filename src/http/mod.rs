//! HTTP/1.1: request heads (`request`), responses (`response`), the REST API
//! and the WebSocket upgrade routes (`routes`), the client address behind a
//! reverse proxy (`proxy`), the plain-HTTP listener beside HTTPS
//! (`redirect`), and the embedded web client (`static_files`, with the
//! service worker's app shell in `shell`).
//! Nothing here blocks: a route that needs hashing or storage submits the
//! work and answers later through the loop.

pub mod files;
pub mod mime;
pub mod proxy;
pub mod push;
pub mod range;
pub mod redirect;
pub mod request;
pub mod response;
pub mod routes;
pub mod shell;
pub mod static_files;
pub mod upgrade;

#[cfg(test)]
mod proptests;
