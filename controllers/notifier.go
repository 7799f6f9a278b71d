package controllers

import (
	"context"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/postwarden/postwarden/controllers/compiler"
)

// notifier sends objects whose status may have changed to their kind's reconciler:
// the config reconciler after a render, the relays reconciler when what the relays
// enforce changes, the certificate manager when the certificate does.
type notifier struct {
	queues map[compiler.Kind]chan event.GenericEvent
	// renders asks the config reconciler for a render, for an input that is no object
	// it watches (the DKIM checker's findings). One pending request stands for any number.
	renders chan event.GenericEvent
}

func newNotifier() *notifier {
	n := &notifier{queues: map[compiler.Kind]chan event.GenericEvent{}, renders: make(chan event.GenericEvent, 1)}
	for _, k := range []compiler.Kind{compiler.KindMailDomain, compiler.KindSMTPCredential, compiler.KindDiscoveryPolicy, compiler.KindTLSDeliveryPolicy} {
		n.queues[k] = make(chan event.GenericEvent, 1024)
	}
	return n
}

// source is what kind's reconciler watches.
func (n *notifier) source(kind compiler.Kind) source.Source {
	return source.Channel(n.queues[kind], &handler.EnqueueRequestForObject{})
}

// notify sends each key to its kind's reconciler. It blocks while a queue is full,
// which paces the caller, and gives up when ctx ends.
func (n *notifier) notify(ctx context.Context, keys []compiler.ObjectKey) {
	for _, k := range keys {
		obj := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: k.Namespace, Name: k.Name}}
		select {
		case n.queues[k.Kind] <- event.GenericEvent{Object: obj}:
		case <-ctx.Done():
			return
		}
	}
}

// render asks for a render without waiting: one already pending covers this one.
func (n *notifier) render() {
	select {
	case n.renders <- event.GenericEvent{Object: &metav1.PartialObjectMetadata{}}:
	default:
	}
}
