//! Every platform, one line each: its name on the command line and its implementation.

use std::fmt;

use crate::profile::TargetRules;

use super::target::Target;

/// Declares [`Platform`] (the `--platform` values) and maps each to its implementation.
macro_rules! registry {
    ($($variant:ident => $name:literal, $implementation:expr;)+) => {
        /// The platforms `molten compose` can target.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
        pub enum Platform {
            $(#[value(name = $name)] $variant,)+
        }

        impl Platform {
            pub const ALL: [Platform; [$($name),+].len()] = [$(Platform::$variant),+];

            pub fn name(self) -> &'static str {
                match self {
                    $(Platform::$variant => $name,)+
                }
            }

            /// The implementation that composes for this platform.
            pub fn target(self) -> &'static dyn Target {
                match self {
                    $(Platform::$variant => &$implementation,)+
                }
            }

            /// Its rules for the profile stage (`LoadOptions::platform`).
            pub fn rules(self) -> &'static dyn TargetRules {
                match self {
                    $(Platform::$variant => &$implementation,)+
                }
            }
        }
    };
}

registry! {
    Packet => "packet", super::packet::Packet;
    Vagrant => "vagrant", super::vagrant::Vagrant;
    Ipxe => "ipxe", super::ipxe::Ipxe;
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_implementations() {
        for platform in Platform::ALL {
            assert_eq!(platform.rules().name(), platform.name());
            assert_eq!(platform.target().name(), platform.name());
            platform.target().templates().parse_all().unwrap();
        }
    }
}
