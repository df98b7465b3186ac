//! Open enums: a field whose values are a known set of strings, where a value this version
//! does not know is kept verbatim and written back unchanged (a newer stage's value must pass
//! through an older one).
//!
//! `open_enum!` declares the enum with one unit variant per known string and an
//! `Unknown(String)` variant, and gives it:
//! * serde as a plain string: a known value is its exact string, anything else goes to
//!   `Unknown` on reading and is written back as it came;
//! * a JSON Schema listing the known values while accepting any other string;
//! * `as_str`, `Display`, `From<&str>`/`From<String>`, `KNOWN`, and comparison with `str`.
//!
//! Build values with `From` (or the known variants): `Unknown("static")` would be written
//! as `static` but does not compare equal to the `static` variant.

/// Declares an open enum; see the module documentation.
macro_rules! open_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$variant_meta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$variant_meta])* $variant, )+
            /// A value this version does not know, kept verbatim and written back unchanged.
            Unknown(String),
        }

        impl $name {
            /// Every known value, in declaration order.
            pub const KNOWN: &'static [$name] = &[$($name::$variant),+];

            /// The value as written in the document.
            pub fn as_str(&self) -> &str {
                match self {
                    $( $name::$variant => $text, )+
                    $name::Unknown(text) => text,
                }
            }

            /// False for a value this version does not know.
            pub fn is_known(&self) -> bool {
                !matches!(self, $name::Unknown(_))
            }
        }

        impl From<&str> for $name {
            fn from(text: &str) -> $name {
                match text {
                    $( $text => $name::$variant, )+
                    other => $name::Unknown(other.to_string()),
                }
            }
        }

        impl From<String> for $name {
            fn from(text: String) -> $name {
                match text.as_str() {
                    $( $text => $name::$variant, )+
                    _ => $name::Unknown(text),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<$name, D::Error> {
                <String as serde::Deserialize>::deserialize(deserializer).map($name::from)
            }
        }

        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "anyOf": [
                        {
                            "type": "string",
                            "enum": [$($text),+],
                        },
                        {
                            "type": "string",
                            "description": "A value this version does not know: kept and written back unchanged.",
                        },
                    ],
                })
            }
        }
    };
}

pub(crate) use open_enum;

#[cfg(test)]
mod tests {
    open_enum! {
        /// A test enum.
        pub enum Colour {
            /// Red.
            Red = "red",
            /// Dark blue.
            DarkBlue = "dark-blue",
        }
    }

    #[test]
    fn known_values_round_trip() {
        for colour in Colour::KNOWN {
            let text = serde_json::to_string(colour).unwrap();
            assert_eq!(text, format!("\"{}\"", colour.as_str()));
            let back: Colour = serde_json::from_str(&text).unwrap();
            assert_eq!(&back, colour);
            assert!(back.is_known());
        }
        assert_eq!(Colour::from("dark-blue"), Colour::DarkBlue);
        assert_eq!(Colour::DarkBlue, "dark-blue");
        assert_eq!(Colour::Red.to_string(), "red");
    }

    #[test]
    fn unknown_values_pass_through_verbatim() {
        for text in ["green", "", "Red", " red", "dark_blue", "ünïcode"] {
            let json = serde_json::to_string(text).unwrap();
            let colour: Colour = serde_json::from_str(&json).unwrap();
            assert_eq!(colour, Colour::Unknown(text.to_string()));
            assert!(!colour.is_known());
            assert_eq!(serde_json::to_string(&colour).unwrap(), json);
        }
    }

    #[test]
    fn non_strings_are_refused() {
        assert!(serde_json::from_str::<Colour>("1").is_err());
        assert!(serde_json::from_str::<Colour>("null").is_err());
    }

    #[test]
    fn schema_lists_the_known_values_and_accepts_others() {
        let schema = serde_json::to_value(schemars::schema_for!(Colour)).unwrap();
        let any_of = schema["anyOf"].as_array().unwrap();
        assert_eq!(any_of[0]["enum"], serde_json::json!(["red", "dark-blue"]));
        assert_eq!(any_of[1]["type"], "string");
        assert!(any_of[1].get("enum").is_none());
    }
}
