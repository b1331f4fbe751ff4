// Package cdp drives a real headless Chromium through the Chrome DevTools
// Protocol, for end-to-end tests that need a browser: cookies, redirects
// across hosts, forms. It is a minimal client (a page, navigation,
// JavaScript evaluation, cookies, screenshots) over the DevTools WebSocket.
//
// Chromium runs with --no-sandbox: its sandbox cannot start as root (CI
// containers), and the pages it opens are the test's own.
package cdp

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/websocket"
)

// Find returns the Chromium binary: $CHROMIUM, else chromium or
// chromium-browser on PATH.
func Find() (string, error) {
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p, nil
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("chromium is not installed: run scripts/chromium.sh (apt-get install chromium) or set CHROMIUM")
}

// Browser is a running headless Chromium.
type Browser struct {
	cmd  *exec.Cmd
	http string // http://127.0.0.1:PORT of the DevTools endpoint
	done chan struct{}
}

// Start launches Chromium with a fresh profile in dir.
func Start(ctx context.Context, bin, dir string) (*Browser, error) {
	cmd := exec.Command(bin,
		"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-sync",
		"--disable-background-networking", "--no-proxy-server", "--password-store=basic",
		"--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "--remote-allow-origins=*",
		"--window-size=1024,768", "--user-data-dir="+dir, "about:blank")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start chromium: %w", err)
	}
	b := &Browser{cmd: cmd, done: make(chan struct{})}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			if _, ws, ok := strings.Cut(line, "DevTools listening on "); ok {
				select {
				case found <- ws:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	go func() { _ = cmd.Wait(); close(b.done) }()
	select {
	case ws := <-found:
		// ws://127.0.0.1:PORT/devtools/browser/ID
		rest := strings.TrimPrefix(ws, "ws://")
		host, _, _ := strings.Cut(rest, "/")
		b.http = "http://" + host
		return b, nil
	case <-b.done:
		return nil, errors.New("chromium exited before its DevTools endpoint was up")
	case <-time.After(30 * time.Second):
		b.Close()
		return nil, errors.New("chromium: no DevTools endpoint within 30s")
	case <-ctx.Done():
		b.Close()
		return nil, ctx.Err()
	}
}

// Close kills Chromium and its children.
func (b *Browser) Close() {
	if b.cmd.Process != nil {
		_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
	}
	<-b.done
}

// NewPage opens a tab and connects to it.
func (b *Browser) NewPage(ctx context.Context) (*Page, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, b.http+"/json/new?about:blank", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var target struct {
		WebSocketDebuggerURL string `json:"webSocketDebuggerUrl"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&target); err != nil || target.WebSocketDebuggerURL == "" {
		return nil, fmt.Errorf("chromium /json/new: HTTP %d: %v", resp.StatusCode, err)
	}
	cfg, err := websocket.NewConfig(target.WebSocketDebuggerURL, "http://127.0.0.1/")
	if err != nil {
		return nil, err
	}
	ws, err := cfg.DialContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect to the tab: %w", err)
	}
	ws.MaxPayloadBytes = 64 << 20
	p := &Page{ws: ws, pending: map[int64]chan reply{}, closed: make(chan struct{})}
	go p.read()
	for _, m := range []string{"Page.enable", "Network.enable", "Runtime.enable"} {
		if err := p.Call(ctx, m, nil, nil); err != nil {
			p.Close()
			return nil, err
		}
	}
	return p, nil
}

// Page is one tab.
type Page struct {
	ws      *websocket.Conn
	mu      sync.Mutex
	next    int64
	pending map[int64]chan reply
	closed  chan struct{}
	err     error
}

type reply struct {
	Result json.RawMessage
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
}

func (p *Page) read() {
	defer close(p.closed)
	for {
		var msg struct {
			ID     int64           `json:"id"`
			Method string          `json:"method"`
			Result json.RawMessage `json:"result"`
			Error  *struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := websocket.JSON.Receive(p.ws, &msg); err != nil {
			p.mu.Lock()
			p.err = err
			p.mu.Unlock()
			return
		}
		if msg.ID == 0 {
			continue // an event
		}
		p.mu.Lock()
		ch := p.pending[msg.ID]
		delete(p.pending, msg.ID)
		p.mu.Unlock()
		if ch != nil {
			ch <- reply{Result: msg.Result, Error: msg.Error}
		}
	}
}

// Close closes the tab's connection.
func (p *Page) Close() { _ = p.ws.Close(); <-p.closed }

// Call sends a DevTools command and decodes its result into out (if not nil).
func (p *Page) Call(ctx context.Context, method string, params, out any) error {
	p.mu.Lock()
	p.next++
	id := p.next
	ch := make(chan reply, 1)
	p.pending[id] = ch
	p.mu.Unlock()
	if params == nil {
		params = struct{}{}
	}
	if err := websocket.JSON.Send(p.ws, map[string]any{"id": id, "method": method, "params": params}); err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	select {
	case r := <-ch:
		if r.Error != nil {
			return fmt.Errorf("%s: %s (%d)", method, r.Error.Message, r.Error.Code)
		}
		if out != nil {
			return json.Unmarshal(r.Result, out)
		}
		return nil
	case <-p.closed:
		return fmt.Errorf("%s: connection closed: %v", method, p.err)
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", method, ctx.Err())
	}
}

// Navigate opens url and waits until the page the navigation ends on
// (after redirects) has loaded.
func (p *Page) Navigate(ctx context.Context, url string) error {
	var res struct {
		ErrorText string `json:"errorText"`
	}
	if err := p.Call(ctx, "Page.navigate", map[string]any{"url": url}, &res); err != nil {
		return err
	}
	if res.ErrorText != "" {
		return fmt.Errorf("navigate to %s: %s", url, res.ErrorText)
	}
	return p.WaitLoaded(ctx)
}

// WaitLoaded waits until the current document has loaded.
func (p *Page) WaitLoaded(ctx context.Context) error {
	// Let a navigation that was just started replace the old document.
	time.Sleep(100 * time.Millisecond)
	return p.WaitFor(ctx, `document.readyState === "complete"`)
}

// WaitFor polls a JavaScript expression until it is true.
func (p *Page) WaitFor(ctx context.Context, expr string) error {
	for {
		var ok bool
		err := p.Eval(ctx, expr, &ok)
		if err == nil && ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last error: %v)", expr, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Eval evaluates a JavaScript expression (awaiting a promise) and decodes
// its value into out.
func (p *Page) Eval(ctx context.Context, expr string, out any) error {
	var res struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	if err := p.Call(ctx, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true}, &res); err != nil {
		return err
	}
	if res.ExceptionDetails != nil {
		return fmt.Errorf("evaluate %s: %s", expr, res.ExceptionDetails.Text)
	}
	if out == nil || len(res.Result.Value) == 0 {
		return nil
	}
	return json.Unmarshal(res.Result.Value, out)
}

// URL is the page's address.
func (p *Page) URL(ctx context.Context) (string, error) {
	var u string
	err := p.Eval(ctx, "location.href", &u)
	return u, err
}

// Text is the page's visible text.
func (p *Page) Text(ctx context.Context) (string, error) {
	var s string
	err := p.Eval(ctx, "document.body ? document.body.innerText : ''", &s)
	return s, err
}

// Cookie is a browser cookie as DevTools reports it.
type Cookie struct {
	Name     string `json:"name"`
	Value    string `json:"value"`
	Domain   string `json:"domain"`
	Path     string `json:"path"`
	HTTPOnly bool   `json:"httpOnly"`
	Secure   bool   `json:"secure"`
	SameSite string `json:"sameSite"`
	Session  bool   `json:"session"`
}

// Cookies returns the cookies the browser would send to url.
func (p *Page) Cookies(ctx context.Context, url string) ([]Cookie, error) {
	var res struct {
		Cookies []Cookie `json:"cookies"`
	}
	err := p.Call(ctx, "Network.getCookies", map[string]any{"urls": []string{url}}, &res)
	return res.Cookies, err
}

// SetCookie stores a host-only cookie for url's host.
func (p *Page) SetCookie(ctx context.Context, url string, c Cookie) error {
	var res struct {
		Success bool `json:"success"`
	}
	err := p.Call(ctx, "Network.setCookie", map[string]any{
		"name": c.Name, "value": c.Value, "url": url, "path": "/", "httpOnly": c.HTTPOnly, "sameSite": "Lax",
	}, &res)
	if err == nil && !res.Success {
		err = errors.New("Network.setCookie refused the cookie")
	}
	return err
}

// Screenshot saves a PNG of the page to path.
func (p *Page) Screenshot(ctx context.Context, path string) error {
	var res struct {
		Data string `json:"data"`
	}
	if err := p.Call(ctx, "Page.captureScreenshot", map[string]any{"format": "png"}, &res); err != nil {
		return err
	}
	b, err := base64.StdEncoding.DecodeString(res.Data)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
