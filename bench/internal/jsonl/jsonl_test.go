package jsonl

import (
	"errors"
	"strings"
	"testing"
)

func TestEachSkipsBlankLinesAndNumbersErrors(t *testing.T) {
	var got []string
	err := Each(strings.NewReader("{\"a\":1}\n\n  \n{\"b\":2}\n"), func(line []byte) error {
		got = append(got, string(line))
		return nil
	})
	if err != nil || len(got) != 2 || got[0] != `{"a":1}` || got[1] != `{"b":2}` {
		t.Fatalf("got %q, %v", got, err)
	}
	bad := errors.New("bad")
	err = Each(strings.NewReader("{}\n\n{\"x\":1}\n"), func(line []byte) error {
		if string(line) != "{}" {
			return bad
		}
		return nil
	})
	if !errors.Is(err, bad) || !strings.HasPrefix(err.Error(), "line 3:") {
		t.Fatalf("error %v", err)
	}
	if err := Each(strings.NewReader(strings.Repeat("x", maxLine+1)), func([]byte) error { return nil }); err == nil {
		t.Fatal("an overlong line was accepted")
	}
}
