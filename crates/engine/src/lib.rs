//! Lifeboat engine: the compute service and durable workflows over store and host agents.
