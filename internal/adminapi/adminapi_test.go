package adminapi

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestCall(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			w.Write([]byte(`{"name":"A"}`))
		case "/refused":
			w.WriteHeader(http.StatusConflict)
			w.Write([]byte(`{"error":"database APP already exists","code":"exists"}`))
		case "/plain":
			w.WriteHeader(http.StatusBadGateway)
		default:
			w.Write([]byte(`not json`))
		}
	}))
	defer srv.Close()
	hc := NewClient(nil, 5*time.Second)
	ctx := context.Background()
	var out struct{ Name string }
	if err := Call(ctx, hc, http.MethodPost, srv.URL+"/ok", map[string]int{"a": 1}, &out); err != nil || out.Name != "A" {
		t.Fatalf("ok: %+v %v", out, err)
	}
	var ae *Error
	if err := Call(ctx, hc, http.MethodGet, srv.URL+"/refused", nil, nil); !errors.As(err, &ae) || ae.Status != 409 || ae.Message != "database APP already exists" {
		t.Fatalf("refused: %v", err)
	}
	if err := Call(ctx, hc, http.MethodGet, srv.URL+"/plain", nil, nil); !errors.As(err, &ae) || ae.Status != 502 {
		t.Fatalf("plain error status: %v", err)
	}
	if err := Call(ctx, hc, http.MethodGet, srv.URL+"/garbage", nil, &out); err == nil {
		t.Fatal("a body that is not JSON was accepted")
	}
	if BaseURL("h:1", nil) != "http://h:1" {
		t.Fatal("BaseURL without TLS")
	}
}
