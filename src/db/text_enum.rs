//! [`text_enum!`]: a closed set of names stored as text (channel types, statuses), written once. It makes
//! the enum (a sea-orm active enum, so entity columns can hold it; serde with the same names), its
//! `ALL`, `as_str`, `parse`, `Display`, comparison with a stored name, and a `&[&str]` of the names for
//! list-filter whitelists.

/// `text_enum! { pub enum ChannelStatus / STATUSES { Connected = "connected", … } }`
macro_rules! text_enum {
    ($(#[$meta:meta])* $vis:vis enum $name:ident / $names:ident { $($(#[$vmeta:meta])* $variant:ident = $s:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, sea_orm::EnumIter, sea_orm::DeriveActiveEnum,
            serde::Serialize, serde::Deserialize,
        )]
        #[sea_orm(rs_type = "String", db_type = "Text")]
        $vis enum $name {
            $($(#[$vmeta])* #[sea_orm(string_value = $s)] #[serde(rename = $s)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The name stored, sent and accepted.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $s),+
                }
            }

            pub fn parse(s: &str) -> Option<$name> {
                match s {
                    $($s => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        /// Every name, in declaration order (list-filter whitelists, messages).
        $vis const $names: &[&str] = &[$($s),+];

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        /// Compares with a stored name (`status == "error"`).
        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
    };
}

pub(crate) use text_enum;

#[cfg(test)]
mod tests {
    text_enum! {
        enum Fruit / FRUITS { Apple = "apple", BloodOrange = "blood_orange" }
    }

    #[test]
    fn names_are_written_once_and_agree_everywhere() {
        assert_eq!(FRUITS, ["apple", "blood_orange"]);
        for f in Fruit::ALL {
            assert_eq!(Fruit::parse(f.as_str()), Some(*f));
            assert_eq!(serde_json::to_value(f).unwrap(), f.as_str());
            assert_eq!(sea_orm::ActiveEnum::to_value(f), f.as_str());
            assert_eq!(f.to_string(), f.as_str());
        }
        assert_eq!(Fruit::BloodOrange, "blood_orange");
        assert!(Fruit::parse("pear").is_none());
    }
}
