//! paybridge-alipay: Alipay app pay (being written).
pub mod sandbox;
