//! Enums whose variants are Prometheus label values (or config keywords).
//!
//! [`label_enum!`] writes each variant's string once; `as_str`, `ALL`,
//! `index`, `Display`, `Serialize` and `Deserialize` all follow from it, so
//! the exposition, the JSON API, the config file and the tests cannot drift
//! apart. This module imports nothing from the crate: every other module may
//! use it.

/// Declares a fieldless enum of label values:
///
/// ```ignore
/// label_enum! {
///     /// Doc of the enum.
///     pub enum Tier {
///         /// Doc of the variant.
///         Primary = "primary",
///         Fallback = "fallback",
///     }
/// }
/// ```
macro_rules! label_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $label:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every variant, in declaration order (the order of `index`).
            pub const ALL: [$name; [$($label),+].len()] = [$($name::$variant),+];
            /// Every label value, in declaration order.
            pub const LABELS: [&'static str; [$($label),+].len()] = [$($label),+];

            /// The label value.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $label ),+
                }
            }

            /// Position in [`Self::ALL`], for per-variant arrays of counters.
            pub const fn index(self) -> usize {
                self as usize
            }

            /// The variant whose label value is `s`.
            pub fn from_label(s: &str) -> Option<Self> {
                match s {
                    $( $label => Some($name::$variant), )+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                // Read as an enum of unit variants, the way a derived
                // Deserialize does: the deserializer then knows where the
                // variant name is, and the config names its line and column.
                struct Variant;
                impl<'de> serde::de::DeserializeSeed<'de> for Variant {
                    type Value = $name;
                    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<$name, D::Error> {
                        d.deserialize_identifier(Visitor)
                    }
                }
                struct Visitor;
                impl<'de> serde::de::Visitor<'de> for Visitor {
                    type Value = $name;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(f, "one of {}", $name::LABELS.join(", "))
                    }
                    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<$name, E> {
                        $name::from_label(s).ok_or_else(|| E::unknown_variant(s, &$name::LABELS))
                    }
                    fn visit_enum<A: serde::de::EnumAccess<'de>>(self, data: A) -> Result<$name, A::Error> {
                        let (value, rest) = data.variant_seed(Variant)?;
                        serde::de::VariantAccess::unit_variant(rest)?;
                        Ok(value)
                    }
                }
                d.deserialize_enum(stringify!($name), &$name::LABELS, Visitor)
            }
        }
    };
}

pub(crate) use label_enum;

#[cfg(test)]
mod tests {
    label_enum! {
        /// A test enum.
        pub enum Colour {
            Red = "red",
            /// Documented variant.
            DarkBlue = "dark_blue",
        }
    }

    #[test]
    fn strings_round_trip_through_every_form() {
        for c in Colour::ALL {
            assert_eq!(Colour::from_label(c.as_str()), Some(c));
            assert_eq!(c.to_string(), c.as_str());
            assert_eq!(Colour::ALL[c.index()], c);
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(json, format!("\"{}\"", c.as_str()));
            assert_eq!(serde_json::from_str::<Colour>(&json).unwrap(), c);
        }
        assert_eq!(Colour::LABELS, ["red", "dark_blue"]);
        assert_eq!(Colour::from_label("blue"), None);
        let err = serde_json::from_str::<Colour>("\"blue\"").unwrap_err();
        assert!(
            err.to_string()
                .contains("unknown variant `blue`, expected `red` or `dark_blue`"),
            "{err}"
        );
    }
}
