package registry

// Services lists the registered services in start-up order, which Close
// undoes: for the tests, as the manager reaches them through ReadyzCheckers.
func (r *Registry) Services() []Service {
	return append([]Service(nil), r.services...)
}
