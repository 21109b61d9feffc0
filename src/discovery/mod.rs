//! Providers of route specs: the file config (`file`) and Swarm (`swarm`).
//! Providers never touch the data plane; they publish [`ProviderSnapshot`]s that the app merges,
//! compiles and swaps in.

pub mod dns;
pub mod swarm;

use crate::labels::GlobalOptions;
use crate::model::{Problem, RouteSpec};

/// What a provider currently wants routed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProviderSnapshot {
    /// Routes with upstreams resolved to addresses (`UpstreamTarget::Static`).
    pub routes: Vec<RouteSpec>,
    pub problems: Vec<Problem>,
    pub global: GlobalOptions,
}
