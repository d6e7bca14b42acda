package main_test

import (
	"os"
	"testing"

	"github.com/mirrorkit/mirrorkit/internal/memberproc"
	"github.com/mirrorkit/mirrorkit/internal/miniotest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	miniotest.StopShared()
	memberproc.RemoveBuilds()
	os.Exit(code)
}
