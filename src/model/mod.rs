//! The route model: what providers produce (`spec`) and what the data plane reads (`table`).
//! Pure data and pure functions; no I/O.

mod spec;
pub mod table;

pub use spec::*;
pub use table::{compile, compile_guarded, CompileOptions, RouteTable};
