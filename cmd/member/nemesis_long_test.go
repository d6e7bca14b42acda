//go:build longfaults

package main_test

// The long run of TestLinearizableUnderFaults:
//
//	go test -tags longfaults -run TestLinearizableUnderFaults -timeout 3h ./cmd/member/
func init() { nemesisRounds = 200 }
