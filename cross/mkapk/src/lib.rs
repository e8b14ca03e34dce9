//! apk v3 packages (OpenWrt 25.x) without apk-tools: written as
//! `apk mkpkg` writes them and read back as `apk adbdump` and apk's
//! extraction read them (apk-tools 3.0.6, alpinelinux/apk-tools).

pub mod adb;
pub mod build;
pub mod dump;
pub mod read;
pub mod schema;
pub mod values;
