package queueadmin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"syscall"
	"time"
)

// Client calls a relay's admin socket. Every error it returns is an *Error.
type Client struct {
	socket string
	http   *http.Client
}

// NewClient returns a client of the socket at path; timeout bounds each request.
func NewClient(path string, timeout time.Duration) *Client {
	d := net.Dialer{Timeout: 5 * time.Second}
	return &Client{socket: path, http: &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return d.DialContext(ctx, "unix", path)
			},
			DisableKeepAlives: true, // one request per run of the CLI
		},
	}}
}

// List returns the queued messages f selects, in the order they were accepted.
func (c *Client) List(ctx context.Context, f Filter) ([]Message, error) {
	var out struct {
		Messages []Message `json:"messages"`
	}
	u := "/v1/messages"
	if q := f.Values().Encode(); q != "" {
		u += "?" + q
	}
	err := c.do(ctx, http.MethodGet, u, nil, &out)
	return out.Messages, err
}

// Show returns one message.
func (c *Client) Show(ctx context.Context, id string) (Detail, error) {
	var d Detail
	err := c.do(ctx, http.MethodGet, "/v1/messages/"+url.PathEscape(id), nil, &d)
	return d, err
}

// Command runs cmd on id, or retries every message when cmd is CmdRetry and id "".
func (c *Client) Command(ctx context.Context, cmd, id, reason string) (Result, error) {
	p := "/v1/retry-all"
	if id != "" || cmd != CmdRetry {
		p = "/v1/messages/" + url.PathEscape(id) + "/" + url.PathEscape(cmd)
	}
	var res Result
	err := c.do(ctx, http.MethodPost, p, Request{Reason: reason}, &res)
	return res, err
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd *bytes.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return &Error{Code: CodeInternal, Message: err.Error()}
		}
		rd = bytes.NewReader(data)
	} else {
		rd = bytes.NewReader(nil)
	}
	// The host is a placeholder: the dialer always goes to the socket.
	req, err := http.NewRequestWithContext(ctx, method, "http://relay"+path, rd)
	if err != nil {
		return &Error{Code: CodeBadRequest, Message: err.Error()}
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return c.dialError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e Error
		if json.NewDecoder(resp.Body).Decode(&e) != nil || e.Code == "" {
			return &Error{Code: CodeInternal, Message: "the relay answered " + resp.Status}
		}
		return &e
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return &Error{Code: CodeInternal, Message: "reading the relay's answer: " + err.Error()}
	}
	return nil
}

// dialError tells "no relay here" from "not allowed" from anything else.
func (c *Client) dialError(err error) *Error {
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
		return &Error{Code: CodeUnreachable, Message: fmt.Sprintf(
			"no relay answers on %s: is the relay running, with this spool (--spool-dir) and its admin socket on (--admin-socket)?", c.socket)}
	case errors.Is(err, context.DeadlineExceeded), isTimeout(err):
		return &Error{Code: CodeTimeout, Message: fmt.Sprintf(
			"the relay did not answer on %s in time (--timeout); a command may still have been carried out: check with show", c.socket)}
	case errors.Is(err, fs.ErrPermission):
		return &Error{Code: CodeForbidden, Message: fmt.Sprintf(
			"not allowed to use %s: run as the relay's user or root", c.socket)}
	}
	return &Error{Code: CodeUnreachable, Message: fmt.Sprintf("talking to the relay on %s: %v", c.socket, err)}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
