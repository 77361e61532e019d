// Card payment with Stripe.js: collect the card with a SetupIntent, let the server
// confirm the PaymentIntent with it, and run 3-D Secure if the bank asks for it.
// The booking is confirmed by Stripe's webhook, never by this script.
(function () {
  "use strict";
  var form = document.getElementById("payment-form");
  if (!form || typeof Stripe === "undefined") { return; }
  var stripe = Stripe(form.dataset.publishableKey);
  var savedForm = document.getElementById("saved-card-form");
  var card = stripe.elements().create("card");
  card.mount("#card-element");
  var errors = document.getElementById("card-errors");
  var button = document.getElementById("pay-button");
  var csrf = JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"];

  function fail(message) {
    errors.textContent = message || "The payment did not go through. Nothing was charged.";
    button.disabled = false;
  }

  // The saved card: the server charges it; 3-D Secure, if the bank asks, runs here.
  if (savedForm) {
    var savedButton = document.getElementById("saved-card-button");
    var savedErrors = document.getElementById("saved-card-errors");
    savedForm.addEventListener("submit", function (event) {
      event.preventDefault();
      savedButton.disabled = true;
      savedErrors.textContent = "";
      fetch(savedForm.action, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
        body: "{}"
      })
        .then(function (response) { return response.json().then(function (body) { return [response, body]; }); })
        .then(function (pair) {
          var response = pair[0], body = pair[1];
          if (!response.ok) { throw new Error(body.error); }
          if (body.status === "requires_action") {
            return stripe.confirmCardPayment(body.client_secret).then(function (result) {
              if (result.error) { throw new Error(result.error.message); }
              window.location = body.next;
            });
          }
          window.location = body.next;
        })
        .catch(function (error) {
          savedErrors.textContent = (error && error.message) || "The payment did not go through. Nothing was charged.";
          savedButton.disabled = false;
        });
    });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    button.disabled = true;
    errors.textContent = "";
    stripe.confirmCardSetup(form.dataset.setupSecret, { payment_method: { card: card } })
      .then(function (setup) {
        if (setup.error) { throw new Error(setup.error.message); }
        var method = setup.setupIntent.payment_method;
        return fetch(form.dataset.confirmUrl, {
          method: "POST",
          credentials: "same-origin",
          headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
          body: JSON.stringify({ payment_method: typeof method === "string" ? method : method.id })
        });
      })
      .then(function (response) { return response.json().then(function (body) { return [response, body]; }); })
      .then(function (pair) {
        var response = pair[0], body = pair[1];
        if (!response.ok) { throw new Error(body.error); }
        if (body.status === "requires_action") {
          return stripe.confirmCardPayment(body.client_secret).then(function (result) {
            if (result.error) { throw new Error(result.error.message); }
            window.location = body.next;
          });
        }
        window.location = body.next;
      })
      .catch(function (error) { fail(error && error.message); });
  });
})();
