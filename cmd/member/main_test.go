package main_test

import (
	"os"
	"testing"

	"github.com/mirrorkit/mirrorkit/internal/memberproc"
)

func TestMain(m *testing.M) {
	code := m.Run()
	memberproc.RemoveBuilds()
	os.Exit(code)
}
