//! Per-platform output. A platform is one module here (implementing [`Target`] and the profile
//! rules it extends) plus its templates in `platforms/<name>/`, and one line in [`registry`].
//! This file only declares and re-exports: the modules below never import it.

mod bundle;
mod ipxe;
mod packet;
mod registry;
#[doc(hidden)]
pub mod sample;
mod target;
mod templates;
mod vagrant;

pub use bundle::{Bundle, BundleFile, CopiedFile, SHA256SUMS};
pub use registry::Platform;
pub use target::{ComposedNode, Pinned, Target};
pub use templates::TemplateSet;
pub use vagrant::POINTER_LIMIT;
