// Saving a card with Stripe.js: confirm a SetupIntent with the card form, then tell the
// server, which checks the SetupIntent at Stripe and records the card it collected.
(function () {
  "use strict";
  var form = document.getElementById("card-form");
  if (!form || typeof Stripe === "undefined") { return; }
  var stripe = Stripe(form.dataset.publishableKey);
  var card = stripe.elements().create("card");
  card.mount("#card-element");
  var errors = document.getElementById("card-errors");
  var button = document.getElementById("save-card-button");
  var csrf = JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"];

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    button.disabled = true;
    errors.textContent = "";
    stripe.confirmCardSetup(form.dataset.setupSecret, { payment_method: { card: card } })
      .then(function (setup) {
        if (setup.error) { throw new Error(setup.error.message); }
        return fetch(form.dataset.saveUrl, {
          method: "POST",
          credentials: "same-origin",
          headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
          body: JSON.stringify({ setup_intent: setup.setupIntent.id, next: form.dataset.next })
        });
      })
      .then(function (response) { return response.json().then(function (body) { return [response, body]; }); })
      .then(function (pair) {
        if (!pair[0].ok) { throw new Error(pair[1].error); }
        window.location = pair[1].next;
      })
      .catch(function (error) {
        errors.textContent = (error && error.message) || "The card could not be saved.";
        button.disabled = false;
      });
  });
})();
