package store

import "context"

// ReserveNumberOnly runs the number's step of the gate for r and stops
// there, as a worker that crashed before the debtor's gate would.
func (s *Store) ReserveNumberOnly(ctx context.Context, r GateRequest) error {
	n, err := s.numberCallOf(r)
	if err != nil || n == nil {
		return err
	}
	return s.reserveNumbers(ctx, []*numberCall{n})
}
