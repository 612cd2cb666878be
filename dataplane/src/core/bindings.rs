//! Peers and their bindings: creating a peer from an offer, renegotiating, ending a
//! binding, closing a peer — and keeping the routing tables in step with each.

use super::*;
use crate::protection::Protection;

impl Core {
    pub(super) fn create_peer(
        &mut self,
        now: Instant,
        req: PeerCreate,
        specs: &[PublicationSpec],
        selections: &[(String, u16)],
    ) -> Result<(PeerCreated, Vec<PublicationSpec>), RpcError> {
        if self.ids.contains_key(&req.peer) {
            return Err(RpcError::new(
                ErrorCode::PeerExists,
                format!("peer {} exists", req.peer),
            ));
        }
        if self.peers.len() >= self.max_peers {
            return Err(RpcError::new(
                ErrorCode::CoreUnavailable,
                format!("core {} is full", self.index),
            ));
        }
        // A peer that only plays one publication answers with exactly its codecs.
        let single_publication = match req.bindings.as_slice() {
            [Binding::Subscribe { publication, .. }] => {
                specs.iter().find(|s| &*s.id == publication.as_str())
            }
            _ => None,
        };
        let codecs = match single_publication {
            Some(spec) => peer::only(&spec.params, &req.offer_sdp),
            None => peer::all_codecs_preferring(&req.offer_sdp),
        };
        let setup = Setup {
            now,
            cert: &self.cert,
            candidates: &self.candidates,
        };
        // WHIP and WHEP peers (closed with their last binding) keep the bindings they were
        // made with; a portal or mixer peer may publish later.
        let may_publish = !req.close_when_empty
            || req
                .bindings
                .iter()
                .any(|b| matches!(b, Binding::Publish { .. }));
        let features = peer::Features {
            bwe: req.bandwidth_adaptation,
            twcc: req.bandwidth_adaptation || may_publish,
        };
        let mut rtc = peer::new_rtc(&setup, codecs, features);
        let ufrag = rtc.direct_api().local_ice_credentials().ufrag;
        let key = self.next_key;
        self.next_key = self.next_key.wrapping_add(1).max(1);
        self.peers.insert(
            key,
            Box::new(Peer {
                id: req.peer.clone(),
                rtc,
                ufrag: ufrag.clone(),
                addrs: Vec::new(),
                next_timeout: now,
                created: now,
                connected: false,
                close_when_empty: req.close_when_empty,
                pubs: Vec::new(),
                subs: Vec::new(),
                nacks_seen: HashMap::new(),
                bwe: req.bandwidth_adaptation,
                estimate: None,
                next_bwe_update: now,
                desired: 0,
                minimum: 0,
                next_probe: now,
                padding: crate::padding::Padding::new(now),
                probe_round: false,
            }),
        );
        match self.negotiate(now, key, &req.offer_sdp, &req.bindings, specs, selections) {
            Ok(ok) => {
                self.by_ufrag.insert(ufrag, key);
                self.ids.insert(req.peer, key);
                CoreMetrics::add(&self.metrics.peers, 1);
                Ok(ok)
            }
            Err(e) => {
                self.peers.remove(&key);
                Err(e)
            }
        }
    }

    /// Answers an offer on peer `key`, adding `bindings`. All or nothing: on an error
    /// no binding is added (the peer may have moved to the new offer's state).
    pub(super) fn negotiate(
        &mut self,
        now: Instant,
        key: PeerKey,
        offer: &str,
        bindings: &[Binding],
        specs: &[PublicationSpec],
        selections: &[(String, u16)],
    ) -> Result<(PeerCreated, Vec<PublicationSpec>), RpcError> {
        let sections =
            sdp::sections(offer).map_err(|e| RpcError::new(ErrorCode::BadSdp, e.to_string()))?;
        let offered = |has: fn(&sdp::Section) -> bool| -> Vec<String> {
            sections
                .iter()
                .filter(|s| has(s))
                .filter_map(|s| s.mid.clone())
                .collect()
        };
        let (offered_red, offered_nack) = (offered(|s| s.red), offered(|s| s.nack));
        for b in bindings {
            let taken = match b {
                Binding::Publish { publication, .. } => {
                    self.publications.contains_key(publication.as_str())
                }
                Binding::Subscribe { subscription, .. } => {
                    self.subscriptions.contains_key(subscription.as_str())
                }
            };
            if taken || bindings.iter().filter(|x| x.id() == b.id()).count() > 1 {
                return Err(RpcError::new(
                    ErrorCode::PeerExists,
                    format!("{} is already bound", b.id()),
                ));
            }
            if let Binding::Subscribe { publication, .. } = b {
                if !specs.iter().any(|s| &*s.id == publication.as_str()) {
                    return Err(RpcError::new(
                        ErrorCode::UnknownPublication,
                        format!("publication {publication} does not exist"),
                    ));
                }
            }
        }
        let peer = self
            .peers
            .get(&key)
            .ok_or_else(|| RpcError::new(ErrorCode::UnknownPeer, "no such peer"))?;
        // Which new binding each section goes to.
        let mut assigned: Vec<Assigned<'_>> = bindings
            .iter()
            .map(|binding| Assigned {
                binding,
                mids: Vec::new(),
            })
            .collect();
        for sec in &sections {
            let (Some(kind), Some(mid)) = (sec.kind, sec.mid.as_deref()) else {
                continue;
            };
            if sec.rejected || peer.owns(mid) {
                continue;
            }
            let explicit = assigned
                .iter()
                .position(|a| binding_mids(a.binding).is_some_and(|m| m.iter().any(|x| x == mid)));
            let target = explicit.or_else(|| {
                assigned.iter().position(|a| {
                    binding_mids(a.binding).is_none() && allows(a.binding, kind, specs)
                })
            });
            if let Some(t) = target {
                if allows(assigned[t].binding, kind, specs) {
                    assigned[t].mids.push(mid.to_string());
                }
            }
        }
        for a in &assigned {
            if let Some(explicit) = binding_mids(a.binding) {
                if let Some(missing) = explicit.iter().find(|m| {
                    !sections
                        .iter()
                        .any(|s| s.mid.as_deref() == Some(m.as_str()))
                }) {
                    return Err(RpcError::new(
                        ErrorCode::BadRequest,
                        format!("the offer has no section with mid {missing:?}"),
                    ));
                }
            }
        }
        let keep = |_: usize, s: &sdp::Section| {
            s.mid.as_deref().is_some_and(|m| {
                peer.owns(m) || assigned.iter().any(|a| a.mids.iter().any(|x| x == m))
            })
        };
        let (filtered, usable) = sdp::reject_sections(offer, keep)
            .map_err(|e| RpcError::new(ErrorCode::BadSdp, e.to_string()))?;
        if usable == 0 {
            return Err(RpcError::new(
                ErrorCode::NoUsableMedia,
                "the offer has no audio or video section this peer may use",
            ));
        }
        let assigned: Vec<(Binding, Vec<String>)> = assigned
            .into_iter()
            .map(|a| (a.binding.clone(), a.mids))
            .collect();
        let peer = self
            .peers
            .get_mut(&key)
            .ok_or_else(|| RpcError::new(ErrorCode::UnknownPeer, "no such peer"))?;
        let answered = peer::accept(&mut peer.rtc, &filtered)?;
        // Resolve every new binding before adding any.
        let mut bound = Vec::new();
        let mut new_specs = Vec::new();
        let mut new_pubs = Vec::new();
        let mut new_subs = Vec::new();
        for (binding, mids) in assigned {
            let media: Vec<(Mid, MediaKind)> = answered
                .media
                .iter()
                .filter(|(m, _)| mids.iter().any(|x| *x == m.to_string()))
                .copied()
                .collect();
            if media.is_empty() {
                return Err(RpcError::new(
                    ErrorCode::NoUsableMedia,
                    format!("nothing in the offer can carry {}: no section of a permitted kind with a codec in common", binding.id()),
                ));
            }
            let (tracks, params) = peer::tracks(&peer.rtc, &media);
            bound.push(switchyard_dataplane_api::BoundTracks {
                id: binding.id().to_string(),
                tracks: tracks.clone(),
            });
            match binding {
                Binding::Publish {
                    publication,
                    selection,
                    ..
                } => {
                    let id: Arc<str> = Arc::from(publication.as_str());
                    let rids = peer::simulcast_rids(&peer.rtc, &media);
                    let selection = selection.as_ref().and_then(|s| {
                        let core = selections.iter().find(|(x, _)| x == s)?.1;
                        Some((Arc::<str>::from(s.as_str()), core))
                    });
                    new_specs.push(PublicationSpec {
                        id: id.clone(),
                        home: self.index,
                        params,
                        audio: media.iter().any(|(_, k)| *k == MediaKind::Audio),
                        video: media.iter().any(|(_, k)| *k == MediaKind::Video),
                        rids: rids.clone(),
                    });
                    new_pubs.push((
                        PubBinding {
                            publication: id,
                            media,
                            video_ssrcs: Vec::new(),
                            meter: LayerMeter::new(rids.len()),
                            rids,
                            layer_of: Vec::new(),
                            structure: Structure::default(),
                            dependency: None,
                            fec: Vec::new(),
                        },
                        selection,
                    ));
                }
                Binding::Subscribe {
                    subscription,
                    publication,
                    cap,
                    ..
                } => {
                    let spec = specs.iter().find(|s| &*s.id == publication.as_str());
                    let rids = spec.map(|s| s.rids.clone()).unwrap_or_default();
                    let cap = cap_of(&cap, &rids);
                    let mut outs = Vec::new();
                    for (mid, kind) in &media {
                        let ssrc =
                            peer::send_stream(&mut peer.rtc, *mid, *kind, self.retransmit_history);
                        let clock_rate = tracks
                            .iter()
                            .find(|t| t.mid == mid.to_string())
                            .map(|t| t.clock_rate)
                            .unwrap_or(90_000);
                        let mut selector = LayerSelector::default();
                        selector.set_cap(now, cap);
                        outs.push(OutTrack {
                            kind: *kind,
                            mid: *mid,
                            ssrc,
                            rewriter: Rewriter::new(clock_rate, rand::random::<u16>() & 0x7fff),
                            pt_map: Vec::new(),
                            selector,
                            picture_ids: Default::default(),
                            svc: SvcFilter::default(),
                            svc_keyframe_asked: None,
                            red: answered.red.contains(mid)
                                && offered_red.contains(&mid.to_string()),
                            dependency: peer::negotiated_dependency(&peer.rtc, *mid),
                            fec: peer::negotiated_video_fec(&peer.rtc, *mid)
                                .filter(|_| *kind == MediaKind::Video)
                                .map(|(red, ulpfec)| {
                                    let nack = offered_nack.contains(&mid.to_string());
                                    Box::new(OutFec {
                                        red,
                                        ulpfec,
                                        protection: Protection::new(nack),
                                        report: None,
                                        next_check: now,
                                        newest: None,
                                        empty: Arc::from([]),
                                    })
                                }),
                        });
                    }
                    let home = spec.map(|s| s.home).unwrap_or(self.index);
                    self.next_binding += 1;
                    new_subs.push((
                        SubBinding {
                            subscription: Arc::from(subscription.as_str()),
                            publication: Arc::from(publication.as_str()),
                            outs,
                            audio_on: true,
                            video_on: true,
                            created: self.next_binding,
                            shed: false,
                            rids,
                        },
                        home,
                    ));
                }
            }
        }
        let connected = peer.connected;
        let peer_id = peer.id.clone();
        for (b, selection) in new_pubs {
            let layers = b.rids.len().clamp(1, MAX_LAYERS);
            self.publications.insert(
                b.publication.clone(),
                Publication {
                    peer: key,
                    selection,
                    remote_cores: Vec::new(),
                    limiters: vec![KeyframeLimiter::default(); layers],
                    audio_on: true,
                    video_on: true,
                },
            );
            CoreMetrics::add(&self.metrics.publishers, 1);
            if let Some(peer) = self.peers.get_mut(&key) {
                peer.pubs.push(b);
            }
        }
        let mut wanted = Vec::new();
        for (b, home) in new_subs {
            self.homes.insert(b.publication.clone(), home);
            self.subscriptions.insert(b.subscription.clone(), key);
            let list = self.subscribers.entry(b.publication.clone()).or_default();
            list.push((key, b.subscription.clone()));
            if list.len() == 1 && home != self.index {
                self.out.to_cores.push((
                    home,
                    CoreMsg::Interest {
                        publication: b.publication.clone(),
                        core: self.index,
                        on: true,
                    },
                ));
            }
            if connected {
                wanted.push(b.publication.clone());
            }
            if let Some(peer) = self.peers.get_mut(&key) {
                peer.subs.push(b);
            }
        }
        // With bandwidth adaptation the new subscriptions start from the estimate (the
        // estimator's starting figure before its first), not from the top layer.
        if let Some(estimate) = self
            .peers
            .get(&key)
            .filter(|p| p.bwe)
            .map(|p| p.estimate.unwrap_or(INITIAL_ESTIMATE_BPS))
        {
            self.share_estimate(key, estimate, now);
        }
        self.drain(key, now);
        for publication in wanted {
            self.keyframe_wanted(&publication, None, now);
        }
        Ok((
            PeerCreated {
                peer: peer_id,
                core: self.index,
                answer_sdp: answered.answer,
                bound,
            },
            new_specs,
        ))
    }

    /// Ends one binding of a peer.
    pub(super) fn unbind(&mut self, key: PeerKey, id: &str, token: Option<u64>, reason: String) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let mut was_publication = false;
        if let Some(i) = peer.pubs.iter().position(|b| &*b.publication == id) {
            let b = peer.pubs.remove(i);
            self.publications.remove(&b.publication);
            self.metrics
                .publishers
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            was_publication = true;
        } else if let Some(i) = peer.subs.iter().position(|b| &*b.subscription == id) {
            let b = peer.subs.remove(i);
            self.forget_subscription(key, &b);
        } else {
            let peer_id = peer.id.clone();
            self.out.events.push(CoreEvent::Unbound {
                token,
                peer: peer_id,
                id: Arc::from(id),
                publication: false,
                reason: "no such binding".into(),
            });
            return;
        }
        let empty = self
            .peers
            .get(&key)
            .is_some_and(|p| p.close_when_empty && p.pubs.is_empty() && p.subs.is_empty());
        if empty {
            self.close(key, token, reason);
        } else if let Some(peer) = self.peers.get(&key) {
            self.out.events.push(CoreEvent::Unbound {
                token,
                peer: peer.id.clone(),
                id: Arc::from(id),
                publication: was_publication,
                reason,
            });
        }
    }

    pub(super) fn forget_subscription(&mut self, key: PeerKey, b: &SubBinding) {
        self.subscriptions.remove(&b.subscription);
        if let Some(list) = self.subscribers.get_mut(&b.publication) {
            list.retain(|(k, s)| !(*k == key && *s == b.subscription));
            if list.is_empty() {
                self.subscribers.remove(&b.publication);
                if let Some(home) = self.homes.remove(&b.publication) {
                    if home != self.index {
                        self.out.to_cores.push((
                            home,
                            CoreMsg::Interest {
                                publication: b.publication.clone(),
                                core: self.index,
                                on: false,
                            },
                        ));
                    }
                }
            }
        }
    }

    pub(super) fn close(&mut self, key: PeerKey, token: Option<u64>, reason: String) {
        let Some(mut peer) = self.peers.remove(&key) else {
            return;
        };
        peer.rtc.disconnect();
        // Flush what disconnecting produced (DTLS close notify).
        while let Ok(out) = peer.rtc.poll_output() {
            match out {
                Output::Transmit(t) => self.out.transmits.push(Datagram {
                    from: t.source,
                    to: t.destination,
                    data: t.contents.into(),
                    paced: peer.bwe,
                }),
                Output::Timeout(_) => break,
                Output::Event(_) => {}
            }
        }
        self.ids.remove(&peer.id);
        self.by_ufrag.remove(&peer.ufrag);
        for a in &peer.addrs {
            self.by_addr.remove(a);
        }
        self.metrics
            .peers
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        let mut publications = Vec::new();
        for b in &peer.pubs {
            self.publications.remove(&b.publication);
            self.metrics
                .publishers
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            publications.push(b.publication.clone());
        }
        for b in &peer.subs {
            self.forget_subscription(key, b);
        }
        tracing::info!(peer = %peer.id, core = self.index, reason = %reason, "peer closed");
        self.out.events.push(CoreEvent::Closed {
            token,
            peer: peer.id,
            publications,
            reason,
        });
    }
}

fn binding_mids(b: &Binding) -> Option<&Vec<String>> {
    match b {
        Binding::Publish { mids, .. } | Binding::Subscribe { mids, .. } => mids.as_ref(),
    }
}

/// Whether a binding may use a section of `kind`.
fn allows(b: &Binding, kind: MediaKind, specs: &[PublicationSpec]) -> bool {
    match b {
        Binding::Publish { audio, video, .. } => match kind {
            MediaKind::Audio => *audio,
            MediaKind::Video => *video,
        },
        Binding::Subscribe {
            publication,
            audio,
            video,
            ..
        } => {
            let spec = specs.iter().find(|s| &*s.id == publication.as_str());
            match kind {
                MediaKind::Audio => *audio && spec.is_some_and(|s| s.audio),
                MediaKind::Video => *video && spec.is_some_and(|s| s.video),
            }
        }
    }
}
